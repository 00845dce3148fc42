"""The router over real ServerProxies and a real faulty upstream (HTTP, openai SDK), without Ray.

Shows end to end that no request is lost and that fallback and client-only degradation are
reported to the caller.
"""

from __future__ import annotations

import json

import httpx
import pytest

from colm_serve.accounting.ledger import Ledger
from colm_serve.accounting.stores import MemoryStore
from colm_serve.api.routes import create_api
from colm_serve.collab.selection import AllSelector, LLMSelector
from colm_serve.config import BreakerConfig, RetryPolicy
from colm_serve.server_proxy.proxy import ServerProxy
from colm_serve.service import RouterService
from tests.fakes import FakeClient, app_args
from tests.reliability.conftest import ProxyUpstreams
from tests.upstream_sim import Fault, UpstreamSim

FAST_RETRY = RetryPolicy(max_attempts=3, backoff_base_s=0.02, backoff_max_s=0.1, max_retry_after_s=2).model_dump()
CALM_BREAKER = BreakerConfig(failure_threshold=100).model_dump()


@pytest.fixture(scope="module")
def sim():
    with UpstreamSim(models=["m-math", "m-conv", "m-code", "m-eye"]) as server:
        yield server


@pytest.fixture
async def http(sim):
    sim.reset()
    server = {"base_url": sim.url, "timeout_s": 2, "retry": FAST_RETRY, "breaker": CALM_BREAKER}
    args = app_args(servers=[{"name": "a", **server}, {"name": "b", **server}])
    ups = ProxyUpstreams({s.name: ServerProxy(s) for s in args.servers})
    selectors = {"llm": LLMSelector(picker=args.specialist("conv")), "all": AllSelector()}
    router = RouterService(args, ledger=Ledger(args.budgets, MemoryStore()), upstreams=ups, client=FakeClient(),
                           selectors=selectors)
    app = create_api(router)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://router", timeout=60) as client:
        yield client
    await ups.aclose()


def ask(selector="all", top_k=2, **extra):
    return {"model": "colm", "messages": [{"role": "user", "content": "What is 2+2?"}],
            "colm": {"trace": True, "selector": selector, "top_k": top_k, "iterations": 0}, **extra}


async def test_collaboration_over_real_http(http, sim):
    resp = await http.post("/v1/chat/completions", json=ask())
    body = resp.json()
    assert resp.status_code == 200 and body["choices"][0]["message"]["content"]
    assert all(g["text"] for g in body["colm"]["rounds"][0]["guidance"])
    assert body["colm"]["usage"]["server_tokens"] > 0
    stats = (await http.get("/v1/colm/stats")).json()
    assert stats["totals"]["upstream_calls"] == sim.stats.requests == 4  # 4 specialists; the client merges their notes
    assert stats["keys"]["anonymous"]["cost_usd"] == pytest.approx(body["colm"]["usage"]["cost_usd"])


async def test_failing_specialist_is_replaced_and_reported(http, sim):
    sim.set_faults(by_model={"m-math": Fault.error(500)})
    body = (await http.post("/v1/chat/completions", json=ask(selector="llm"))).json()
    guidance = {g["specialist"]: g for g in body["colm"]["rounds"][0]["guidance"]}
    assert body["colm"]["selection_fallback"]  # the sim does not name experts: default list
    assert guidance["math"]["error"].startswith("upstream_error") and guidance["math"]["replaced_by"] == "code"
    assert guidance["code"]["text"] and body["colm"]["degraded"] == []


async def test_every_server_failing_degrades_to_the_client_and_says_so(http, sim):
    sim.set_faults(always=Fault.error(503))
    resp = await http.post("/v1/chat/completions", json=ask())
    body = resp.json()
    assert resp.status_code == 200 and body["choices"][0]["message"]["content"]
    assert body["colm"]["degraded"][0].startswith("client_only")
    assert resp.headers["X-CoLM-Degraded"] == "client_only"
    stats = (await http.get("/v1/colm/stats")).json()
    assert stats["totals"]["retries"] > 0


async def test_drops_and_hangs_are_retried_and_nothing_is_lost(http, sim):
    sim.set_faults(script=[Fault.drop(), Fault.hang(hang_s=5), Fault.error(429, retry_after="1")])
    resp = await http.post("/v1/chat/completions", json=ask())
    body = resp.json()
    assert resp.status_code == 200
    assert all(g["text"] for g in body["colm"]["rounds"][0]["guidance"]), json.dumps(body["colm"])[:800]


async def test_passthrough_upstream_4xx_is_the_apps_400_or_our_502(http, sim):
    """The pass-through sends the app's own parameters: an upstream 400 is the app's to fix. A 404
    (the configured model is unknown there) is the deployment's fault: a 502."""
    ask = {"model": "server/math", "messages": [{"role": "user", "content": "hi"}]}
    sim.set_faults(always=Fault.error(400, message="bad parameter"))
    resp = await http.post("/v1/chat/completions", json=ask)
    err = resp.json()["error"]
    assert resp.status_code == 400 and err["type"] == "invalid_request_error" and "bad parameter" in err["message"]
    sim.set_faults(always=Fault.error(404, message="no such model"))
    resp = await http.post("/v1/chat/completions", json=ask)
    err = resp.json()["error"]
    assert resp.status_code == 502 and err["type"] == "upstream_error" and "404" in err["message"]
    sim.set_faults(always=None)
    ok = await http.post("/v1/chat/completions", json={"model": "server/math", "messages": [{"role": "user", "content": "hi"}]})
    assert ok.status_code == 200 and ok.json()["choices"][0]["message"]["content"]
