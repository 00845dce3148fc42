"""Schemathesis fuzzes the running router's OpenAPI schema: no 5xx, no schema violations.

Every generated chat request is made cheap before it is sent: at most FUZZ_MAX_TOKENS
tokens, small colm fan-outs, and no deadline short enough to turn into a legitimate 504.
Most cases go to `colm-client`; every COLM_EVERY-th to `colm` with its generated options
(strategy, top_k, summary... stay as generated, bounded), and every STREAM_EVERY-th streams:
a stream must start with 200 and end in `data: [DONE]` with no error event. Everything else
(messages, sampling parameters, headers, whole invalid bodies in negative mode) stays as
generated. About 0.2 s a case on a 2-core host: the default 200 per mode takes ~1.5 min.
Set COLM_FUZZ_EXAMPLES for a longer run. What it found is pinned in test_fuzz_regressions.py.

Cases come from `APIOperation.as_strategy` under a plain Hypothesis `@given`: the schema is
loaded from the running app at test time, never at import, and schemathesis' lazy pytest
loader (`from_fixture`) does not work with pytest 9.
"""

from __future__ import annotations

import itertools
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
COLM_EVERY, STREAM_EVERY = 6, 4
BOUNDS = {"top_k": 2, "iterations": 1, "prefix_tokens": 8}  # colm options that multiply the work
POSITIVE, NEGATIVE = GenerationMode.POSITIVE, GenerationMode.NEGATIVE
# (path, method, mode, examples). The GET routes take no body and one optional string
# header, so there is no invalid input to generate for them.
OPERATIONS = [
    ("/v1/chat/completions", "POST", POSITIVE, FUZZ_EXAMPLES),
    ("/v1/chat/completions", "POST", NEGATIVE, FUZZ_EXAMPLES),
    ("/v1/models", "GET", POSITIVE, 5),
    ("/v1/colm/stats", "GET", POSITIVE, 10),
    ("/v1/colm/selectors", "GET", POSITIVE, 5),
    ("/v1/colm/strategies", "GET", POSITIVE, 5),
]


@pytest.fixture(scope="module")
def router_schema(app_url):
    return schemathesis.openapi.from_url(f"{app_url}/openapi.json", timeout=30)


@pytest.fixture(scope="module")
def strategies(app_url) -> dict[str, set[str]]:
    listed = requests.get(f"{app_url}/v1/colm/strategies", timeout=30).json()["strategies"]
    return {s["name"]: set(s["options"]) for s in listed}


@pytest.fixture(scope="module")
def session():
    with requests.Session() as http:
        yield http


COMMON_OPTIONS = {"strategy", "selector", "trace", "progress", "cache", "deadline_s"}


def cheapen(body: Any, mode: GenerationMode, index: int, strategies: dict[str, set[str]] | None = None) -> Any:
    """Keep a generated chat body's shape but make it a short request.

    Valid bodies also get n=1 and a final plain user question: the schema cannot express
    either rule, and without them nearly every positive case stops at validation instead
    of reaching the model with its generated history, sampling parameters and stops.
    """
    if not isinstance(body, dict):
        return body
    colm = index % COLM_EVERY == 0
    body = {**body, "model": "colm" if colm else "colm-client", "stream": index % STREAM_EVERY == 0}
    if not colm and mode is POSITIVE:
        body.pop("colm", None)  # strategy options are a 400 for colm-client; positive cases should reach the model
    if mode is POSITIVE and isinstance(body.get("messages"), list):
        body["messages"] = [*body["messages"], {"role": "user", "content": "Reply with one word."}]
        body["n"] = 1
    for field in ("max_tokens", "max_completion_tokens"):
        value = body.get(field)
        if isinstance(value, int) and not isinstance(value, bool) and value > FUZZ_MAX_TOKENS:
            body[field] = FUZZ_MAX_TOKENS
    if body.get("max_tokens") is None and body.get("max_completion_tokens") is None:
        body["max_tokens"] = FUZZ_MAX_TOKENS
    options = body.get("colm")
    if isinstance(options, dict):
        body["colm"] = _bounded(options)
    if colm and mode is POSITIVE and strategies:
        body["colm"] = _for_a_strategy(body.get("colm") or {}, strategies, index)
    return body


def _for_a_strategy(options: dict, strategies: dict[str, set[str]], index: int) -> dict:
    """A valid case reaches a strategy: one of them in turn, with the generated options it reads
    (an option another strategy reads is a 400 by design; negative cases cover those)."""
    name = sorted(strategies)[index // COLM_EVERY % len(strategies)]
    kept = {k: v for k, v in options.items() if k in COMMON_OPTIONS | strategies[name]}
    if kept.get("selector") not in (None, "all", "embedding", "llm"):
        kept.pop("selector")
    return {**kept, "strategy": name}


def _bounded(options: dict) -> dict:
    """The generated colm options, with the ones that multiply work or time kept small."""
    options = dict(options)
    for name, most in BOUNDS.items():
        value = options.get(name)
        if isinstance(value, int) and not isinstance(value, bool) and value > most:
            options[name] = most
    deadline = options.get("deadline_s")
    if isinstance(deadline, (int, float)) and not isinstance(deadline, bool) and deadline > 0:
        options["deadline_s"] = max(deadline, MIN_DEADLINE_S)
    return options


def check(case, session: requests.Session, mode: GenerationMode, index: int, strategies: dict[str, set[str]]) -> None:
    if case.operation.path == "/v1/chat/completions":
        case.body = cheapen(case.body, mode, index, strategies)
        if isinstance(case.body, dict) and case.body.get("stream") is True:
            check_stream(case, session)
            return
    response = case.call(session=session, timeout=300)
    case.validate_response(response, checks=[not_a_server_error, response_schema_conformance])
    if response.status_code >= 400:
        error = response.json()["error"]
        assert set(error) == {"message", "type", "param", "code"} and error["message"], response.text


def check_stream(case, session: requests.Session) -> None:
    """The schema documents the JSON answer, and schemathesis stops reading a stream after a
    few events; a stream is read to its end here and checked for what it must be."""
    url = case.operation.base_url.rstrip("/") + case.operation.path
    response = session.post(url, json=case.body, headers=dict(case.headers or {}), timeout=300)
    assert response.status_code < 500, response.text[:500]
    if response.status_code >= 400:
        error = response.json()["error"]
        assert set(error) == {"message", "type", "param", "code"} and error["message"], response.text
        return
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.text.rstrip().endswith("data: [DONE]"), f"{case.body}\n{response.text[-500:]}"
    errors = [line for line in response.text.splitlines() if line.startswith('data: {"error"')]
    assert not errors, (case.body, errors)


@pytest.mark.parametrize(("path", "method", "mode", "examples"), OPERATIONS)
def test_router_api_never_fails_and_matches_its_schema(router_schema, session, strategies, path, method, mode, examples):
    operation = router_schema[path][method]
    counter = itertools.count(1)

    @settings(max_examples=examples, deadline=None, database=None, phases=[Phase.explicit, Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(case=operation.as_strategy(generation_mode=mode))
    def fuzz(case):
        check(case, session, mode, next(counter), strategies)

    fuzz()
