"""Per-key budgets: requests/min, server tokens/day, cost/day; refuse or degrade; on every store."""

from __future__ import annotations

import httpx
import pytest

from colm_serve.accounting.ledger import Estimate, Ledger
from colm_serve.accounting.stores import MemoryStore
from colm_serve.api.routes import create_api
from colm_serve.collab.selection import AllSelector
from colm_serve.protocol.usage import Usage
from colm_serve.service import RouterService
from tests.accounting.conftest import DAY, Clock
from tests.fakes import FakeClient, FakeUpstreams, app_args

EST = Estimate(server_tokens=1000, cost_usd=0.01, per_specialist_tokens=300, per_specialist_cost=0.003, specialists=2)


async def test_requests_per_minute_refuses_with_retry_after_and_recovers(open_store):
    clock = Clock()
    ledger = Ledger({"requests_per_min": 2}, open_store(), clock=clock)
    assert (await ledger.admit("a", EST)).ok
    clock.t += 10
    assert (await ledger.admit("a", EST)).ok
    third = await ledger.admit("a", EST)
    assert not third.ok and third.reason == "requests_per_min: 2 requests in the last minute"
    assert third.retry_after_s == pytest.approx(50)  # when the first of the two leaves the window
    assert (await ledger.admit("b", EST)).ok  # other keys are unaffected
    clock.t += 51
    assert (await ledger.admit("a", EST)).ok
    await ledger.aclose()


async def test_daily_token_budget_refuses_up_front_and_resets_next_day(open_store):
    clock = Clock()
    ledger = Ledger({"server_tokens_per_day": 1500}, open_store(), clock=clock)
    first = await ledger.admit("a", EST)
    assert first.ok and first.reservation.server_tokens == 1000
    await ledger.settle(first, Usage(server_prompt_tokens=900, server_completion_tokens=100))
    behind = await ledger.admit("a", EST)  # the settle is written behind: until then the reservation counts
    assert not behind.ok and "0 of 1500 used today, 1000 reserved by requests in flight" in behind.reason
    await ledger.flush()
    refused = await ledger.admit("a", EST)
    assert not refused.ok and refused.reason == ("server_tokens_per_day: 1000 of 1500 used today; "
                                                 "this request needs about 1000")
    assert refused.retry_after_s == pytest.approx(DAY - clock.t % DAY)
    clock.t += DAY
    assert (await ledger.admit("a", EST)).ok
    await ledger.aclose()


async def test_degrade_consults_fewer_specialists_then_none(open_store):
    ledger = Ledger({"server_tokens_per_day": 1500, "on_exceed": "degrade"}, open_store(), clock=Clock())
    await ledger.record("a", Usage(server_prompt_tokens=800))
    fewer = await ledger.admit("a", EST)  # 700 left: the fixed 400 plus one specialist
    assert fewer.ok and fewer.max_specialists == 1 and fewer.reason.startswith("server_tokens_per_day: 800 of 1500")
    assert fewer.reservation.server_tokens == 700  # it reserved what it may spend, not the full estimate
    none = await ledger.admit("a", EST)  # the 700 are reserved by the first: nothing left
    assert none.ok and none.max_specialists == 0 and none.reservation is None
    assert "700 reserved by requests in flight" in none.reason
    await ledger.settle(fewer, Usage())  # it failed before any upstream call: its 700 are free again
    await ledger.flush()
    again = await ledger.admit("a", EST)
    assert again.max_specialists == 1 and again.reservation.server_tokens == 700
    await ledger.aclose()


async def test_cost_budget_is_enforced_per_key(open_store):
    ledger = Ledger({"cost_usd_per_day": 0.015}, open_store(), clock=Clock())
    await ledger.record("a", Usage(cost_usd=0.01))
    refused = await ledger.admit("a", EST)
    assert not refused.ok and refused.reason.startswith("cost_usd_per_day: $0.0100 of $0.015 used today")
    assert (await ledger.admit("b", EST)).ok
    await ledger.aclose()


async def test_a_request_that_needs_no_server_is_admitted_even_over_budget(open_store):
    ledger = Ledger({"server_tokens_per_day": 100}, open_store(), clock=Clock())
    await ledger.record("a", Usage(server_prompt_tokens=500))
    assert not (await ledger.admit("a", EST)).ok
    client_only = await ledger.admit("a", Estimate())
    assert client_only.ok and client_only.reservation is None
    await ledger.aclose()


async def test_stats_rows_add_up_all_time_and_today(open_store):
    clock = Clock()
    ledger = Ledger({"server_tokens_per_day": 10_000}, open_store(), clock=clock)
    spent = Usage(server_prompt_tokens=300, server_completion_tokens=50, client_prompt_tokens=40, client_completion_tokens=2,
                  cost_usd=0.002, baseline_cost_usd=0.005, saving_usd=0.003)
    await ledger.settle(await ledger.admit("a", EST), spent)
    clock.t += DAY
    await ledger.settle(await ledger.admit("a", EST), spent)
    await ledger.record("b", Usage(server_prompt_tokens=7, cost_usd=0.0001), request=False)
    rows = await ledger.stats()
    assert rows["a"] == {"requests": 2, "server_tokens": 700, "client_tokens": 84, "cost_usd": 0.004,
                         "baseline_cost_usd": 0.01, "saving_usd": 0.006, "server_tokens_today": 350, "cost_usd_today": 0.002}
    assert rows["b"]["requests"] == 0 and rows["b"]["server_tokens"] == 7 and rows["b"]["saving_usd"] == 0.0
    await ledger.aclose()


class CountingStore(MemoryStore):
    """A real memory store that counts the round trips the ledger makes to it."""

    def __init__(self) -> None:
        super().__init__()
        self.reserves = 0

    async def reserve(self, **kwargs):
        self.reserves += 1
        return await super().reserve(**kwargs)


async def test_no_limits_means_no_store_round_trip_on_admit():
    store = CountingStore()
    ledger = Ledger({}, store)
    for _ in range(5):
        admission = await ledger.admit("a", EST)
        assert admission.ok and admission.reservation is None
        await ledger.settle(admission, Usage(server_prompt_tokens=10))
    assert store.reserves == 0
    assert (await ledger.stats())["a"]["requests"] == 5  # settling is still recorded
    daily = Ledger({"server_tokens_per_day": 100}, store)
    assert (await daily.admit("a", Estimate())).ok and store.reserves == 0  # nothing needed of a daily budget
    assert (await daily.admit("a", EST)).ok is False and store.reserves == 1
    await ledger.aclose()
    await daily.aclose()


async def test_settling_a_refused_admission_is_an_error():
    ledger = Ledger({"server_tokens_per_day": 10}, MemoryStore())
    refused = await ledger.admit("a", EST)
    with pytest.raises(ValueError, match="admitted requests"):
        await ledger.settle(refused, Usage())
    await ledger.aclose()


async def test_one_store_enforces_one_budget_across_two_router_replicas():
    """Two RouterService instances (as two replicas would), each with its own Ledger on one store."""
    args = app_args(budgets={"requests_per_min": 3})
    store = MemoryStore()
    ledgers = [Ledger(args.budgets, store) for _ in range(2)]
    routers = [
        RouterService(args, ledger=ledger, upstreams=FakeUpstreams(reply=lambda c: "math"),
                      client=FakeClient(), selectors={"llm": AllSelector(), "all": AllSelector()})
        for ledger in ledgers
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
    await ledgers[1].flush()
    assert sum(row["requests"] for row in (await ledgers[0].stats()).values()) == 3


async def test_degraded_collaboration_is_reported_in_the_trace():
    args = app_args(budgets={"server_tokens_per_day": 10, "on_exceed": "degrade"})
    router = RouterService(args, ledger=Ledger(args.budgets, MemoryStore()), upstreams=FakeUpstreams(reply=lambda c: "math"),
                           client=FakeClient(), selectors={"llm": AllSelector(), "all": AllSelector()})
    app = create_api(router)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://r") as http:
        resp = await http.post("/v1/chat/completions", json={"model": "colm", "messages": [{"role": "user", "content": "hi"}],
                                                             "colm": {"trace": True}})
    body = resp.json()
    assert resp.status_code == 200 and body["choices"][0]["message"]["content"]
    assert body["colm"]["degraded"][0].startswith("client_only: server_tokens_per_day")
    assert body["colm"]["usage"]["server_tokens"] == 0 and resp.headers["X-CoLM-Degraded"] == "client_only"
