"""Schemathesis fuzzes the running router's OpenAPI schema: no 5xx, no schema violations.

Every generated chat request is made cheap before it is sent: model `colm-client`,
at most FUZZ_MAX_TOKENS tokens, no streaming (the schema documents the JSON answer) and no
deadline short enough to turn into a legitimate 504. Everything else (messages, sampling
parameters, colm options, headers, and whole invalid bodies in negative mode) stays as
generated. About 0.2 s a case on a 2-core host: the default 200 per mode takes ~1.5 min.
Set COLM_FUZZ_EXAMPLES for a longer run. What it found is pinned in test_fuzz_regressions.py.

Cases come from `APIOperation.as_strategy` under a plain Hypothesis `@given`: the schema is
loaded from the running app at test time, never at import, and schemathesis' lazy pytest
loader (`from_fixture`) does not work with pytest 9.
"""

from __future__ import annotations

import os
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

pytestmark = pytest.mark.serve

FUZZ_EXAMPLES = int(os.environ.get("COLM_FUZZ_EXAMPLES", "200"))
FUZZ_MAX_TOKENS = 8
MIN_DEADLINE_S = 60.0
POSITIVE, NEGATIVE = GenerationMode.POSITIVE, GenerationMode.NEGATIVE
# (path, method, mode, examples). The GET routes take no body and one optional string
# header, so there is no invalid input to generate for them.
OPERATIONS = [
    ("/v1/chat/completions", "POST", POSITIVE, FUZZ_EXAMPLES),
    ("/v1/chat/completions", "POST", NEGATIVE, FUZZ_EXAMPLES),
    ("/v1/models", "GET", POSITIVE, 5),
    ("/v1/colm/stats", "GET", POSITIVE, 10),
    ("/v1/colm/selectors", "GET", POSITIVE, 5),
]


@pytest.fixture(scope="module")
def router_schema(app_url):
    return schemathesis.openapi.from_url(f"{app_url}/openapi.json", timeout=30)


@pytest.fixture(scope="module")
def session():
    with requests.Session() as http:
        yield http


def cheapen(body: Any, mode: GenerationMode) -> Any:
    """Keep a generated chat body's shape but make it a short colm-client request.

    Valid bodies also get n=1 and a final plain user question: the schema cannot express
    either rule, and without them nearly every positive case stops at validation instead
    of reaching the model with its generated history, sampling parameters and stops.
    """
    if not isinstance(body, dict):
        return body
    body = {**body, "model": "colm-client", "stream": False}
    if mode is POSITIVE and isinstance(body.get("messages"), list):
        body["messages"] = [*body["messages"], {"role": "user", "content": "Reply with one word."}]
        body["n"] = 1
    body.pop("stream_options", None)
    for field in ("max_tokens", "max_completion_tokens"):
        value = body.get(field)
        if isinstance(value, int) and not isinstance(value, bool) and value > FUZZ_MAX_TOKENS:
            body[field] = FUZZ_MAX_TOKENS
    if body.get("max_tokens") is None and body.get("max_completion_tokens") is None:
        body["max_tokens"] = FUZZ_MAX_TOKENS
    colm = body.get("colm")
    deadline = colm.get("deadline_s") if isinstance(colm, dict) else None
    if isinstance(deadline, (int, float)) and not isinstance(deadline, bool) and deadline > 0:
        body["colm"] = {**colm, "deadline_s": max(deadline, MIN_DEADLINE_S)}
    return body


def check(case, session: requests.Session, mode: GenerationMode) -> None:
    if case.operation.path == "/v1/chat/completions":
        case.body = cheapen(case.body, mode)
    response = case.call(session=session, timeout=120)
    case.validate_response(response, checks=[not_a_server_error, response_schema_conformance])
    if response.status_code >= 400:
        error = response.json()["error"]
        assert set(error) == {"message", "type", "param", "code"} and error["message"], response.text


@pytest.mark.parametrize(("path", "method", "mode", "examples"), OPERATIONS)
def test_router_api_never_fails_and_matches_its_schema(router_schema, session, path, method, mode, examples):
    operation = router_schema[path][method]

    @settings(max_examples=examples, deadline=None, database=None, phases=[Phase.explicit, Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(case=operation.as_strategy(generation_mode=mode))
    def fuzz(case):
        check(case, session, mode)

    fuzz()
