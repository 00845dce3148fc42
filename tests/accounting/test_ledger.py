"""Per-key budgets: requests/min, server tokens/day, cost/day; refuse or degrade."""

from __future__ import annotations

import httpx

from colm_serve.accounting.ledger import Estimate, Ledger
from colm_serve.api.routes import create_api
from colm_serve.collab.selection import AllSelector
from colm_serve.protocol import Usage
from colm_serve.service import RouterService
from tests.fakes import FakeClient, FakeUpstreams, app_args


class Clock:
    def __init__(self, t: float = 1_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


EST = Estimate(server_tokens=1000, cost_usd=0.01, per_specialist_tokens=300, per_specialist_cost=0.003, specialists=2)


async def test_requests_per_minute_refuses_with_retry_after_and_recovers():
    clock = Clock()
    ledger = Ledger({"requests_per_min": 2}, clock=clock)
    assert (await ledger.admit("a", EST)).ok and (await ledger.admit("a", EST)).ok
    third = await ledger.admit("a", EST)
    assert not third.ok and "requests_per_min" in third.reason and 1 <= third.retry_after_s <= 60
    assert (await ledger.admit("b", EST)).ok  # other keys are unaffected
    clock.t += 61
    assert (await ledger.admit("a", EST)).ok


async def test_daily_token_budget_refuses_up_front_and_resets_next_day():
    clock = Clock()
    ledger = Ledger({"server_tokens_per_day": 1500}, clock=clock)
    assert (await ledger.admit("a", EST)).ok
    await ledger.record("a", Usage(server_prompt_tokens=900, server_completion_tokens=100))
    refused = await ledger.admit("a", EST)
    assert not refused.ok and "1000 of 1500 used today" in refused.reason
    clock.t += 86400
    assert (await ledger.admit("a", EST)).ok


async def test_degrade_consults_fewer_specialists_then_none():
    ledger = Ledger({"server_tokens_per_day": 1500, "on_exceed": "degrade"}, clock=Clock())
    await ledger.record("a", Usage(server_prompt_tokens=800))
    fewer = await ledger.admit("a", EST)  # 700 left: the fixed 400 plus one specialist
    assert fewer.ok and fewer.max_specialists == 1
    await ledger.record("a", Usage(server_prompt_tokens=600))
    none = await ledger.admit("a", EST)
    assert none.ok and none.max_specialists == 0


async def test_cost_budget_is_enforced_per_key():
    ledger = Ledger({"cost_usd_per_day": 0.015}, clock=Clock())
    await ledger.record("a", Usage(cost_usd=0.01))
    assert not (await ledger.admit("a", EST)).ok
    assert (await ledger.admit("b", EST)).ok


async def test_one_ledger_enforces_one_budget_across_two_router_replicas():
    """Two RouterService instances (as two replicas would) sharing one Ledger."""
    args = app_args(budgets={"requests_per_min": 3})
    ledger = Ledger(args.budgets)
    routers = [
        RouterService(args, ledger=ledger, upstreams=FakeUpstreams(reply=lambda c: "math"),
                      client=FakeClient(), selectors={"llm": AllSelector(), "all": AllSelector()})
        for _ in range(2)
    ]
    body = {"model": "colm-client", "messages": [{"role": "user", "content": "hi"}]}
    statuses = []
    for i in range(5):
        app = create_api(routers[i % 2])
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://r") as http:
            resp = await http.post("/v1/chat/completions", json=body, headers={"Authorization": "Bearer k1"})
            statuses.append(resp.status_code)
            if resp.status_code == 429:
                assert resp.headers["Retry-After"] and resp.json()["error"]["code"] == "budget_exceeded"
    assert statuses == [200, 200, 200, 429, 429]
    assert sum(row["requests"] for row in (await ledger.stats()).values()) == 3


async def test_degraded_collaboration_is_reported_in_the_trace():
    args = app_args(budgets={"server_tokens_per_day": 10, "on_exceed": "degrade"})
    router = RouterService(args, ledger=Ledger(args.budgets), upstreams=FakeUpstreams(reply=lambda c: "math"),
                           client=FakeClient(), selectors={"llm": AllSelector(), "all": AllSelector()})
    app = create_api(router)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://r") as http:
        resp = await http.post("/v1/chat/completions", json={"model": "colm", "messages": [{"role": "user", "content": "hi"}],
                                                             "colm": {"trace": True}})
    body = resp.json()
    assert resp.status_code == 200 and body["choices"][0]["message"]["content"]
    assert body["colm"]["degraded"][0].startswith("client_only: server_tokens_per_day")
    assert body["colm"]["usage"]["server_tokens"] == 0 and resp.headers["X-CoLM-Degraded"] == "client_only"
