"""Inputs the schema fuzzer found to crash a request (500) or the engine; now 400s.

`stop: ""` made vLLM raise VLLMValidationError (a 500). A seed outside int64 passes vLLM's
SamplingParams but overflows `torch.Generator.manual_seed` in the engine's model runner,
taking the engine (and every request on it) down; vLLM's own OpenAI server bounds it too.
"""

from __future__ import annotations

import pytest

from tests.fakes import FakeClient, FakeUpstreams, app_args
from tests.reliability.conftest import asgi_client, router_service

HI = [{"role": "user", "content": "hi"}]


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"stop": ""}, "stop"),
        ({"stop": ["ok", ""]}, "stop"),
        ({"seed": 2**64}, "seed"),
        ({"seed": -(2**63) - 1}, "seed"),
    ],
)
@pytest.mark.parametrize("model", ["colm-client", "colm", "server/math"])
async def test_inputs_that_would_crash_the_engine_are_400s(model, extra, param):
    client = FakeClient()
    service = router_service(app_args(), upstreams=FakeUpstreams(), client=client)
    async with asgi_client(service) as http:
        resp = await http.post("/v1/chat/completions", json={"model": model, "messages": HI, **extra})
    assert resp.status_code == 400, resp.text
    assert resp.json()["error"]["param"] == param and not client.requests


@pytest.mark.parametrize("seed", [2**63 - 1, -(2**63), 0, None])
async def test_every_int64_seed_is_still_accepted(seed):
    client = FakeClient()
    service = router_service(app_args(), upstreams=FakeUpstreams(), client=client)
    async with asgi_client(service) as http:
        resp = await http.post("/v1/chat/completions", json={"model": "colm-client", "messages": HI, "seed": seed})
    assert resp.status_code == 200, resp.text
    assert client.requests[0].seed == seed
