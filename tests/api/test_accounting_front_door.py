"""Budgets and bills at the router's HTTP front door, under concurrency and across restarts.

The real FastAPI app over a RouterService whose Ledger runs on a real store (a sqlite file
shared as two replicas, or a restarted one, would share it), with fakes for the models.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from colm_serve.accounting.ledger import Ledger
from colm_serve.accounting.stores import build_store
from colm_serve.api.auth import hash_key
from colm_serve.api.routes import create_api
from colm_serve.collab.selection import AllSelector
from colm_serve.config import AccountingConfig
from colm_serve.errors import ContextLengthExceeded
from colm_serve.service import RouterService
from tests.collab.harness import Servers
from tests.fakes import FakeClient, FakeUpstreams, app_args

KEY = "sk-front-door"
ASK = {"model": "server/conv", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 20}


def router(path: Path, *, budgets: dict | None = None, client=None, upstreams=None) -> tuple[RouterService, Ledger]:
    args = app_args(auth={"keys": [{"name": "app", "key_sha256": hash_key(KEY)}]}, budgets=budgets or {})
    ledger = Ledger(args.budgets, build_store(AccountingConfig(store="sqlite", path=path)))
    selectors = {"llm": AllSelector(), "all": AllSelector(), "embedding": AllSelector()}
    # Servers bill what the bound assumed (the prompt, and max_tokens written in full).
    service = RouterService(args, upstreams=upstreams or Servers(delay={"": 0.05}), client=client or FakeClient(),
                            ledger=ledger, selectors=selectors)
    return service, ledger


def http(service: RouterService) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=create_api(service)), base_url="http://router",
                             headers={"Authorization": f"Bearer {KEY}"}, timeout=60)


def room_for(n: int) -> dict:
    """A daily token budget that holds exactly `n` of ASK's bound (its prompt plus max_tokens)."""
    from colm_serve.collab.estimate import server_alone

    args = app_args()
    bound = server_alone(args.specialist("conv"), ASK["messages"], ASK["max_tokens"]).server_tokens
    return {"server_tokens_per_day": n * bound + bound // 2}


async def test_fifty_concurrent_requests_against_room_for_ten_admit_ten(tmp_path):
    # each request takes 1 s upstream, so all 50 are admitted or refused before any settles
    service, ledger = router(tmp_path / "ledger.sqlite3", budgets=room_for(10), upstreams=Servers(delay={"": 1.0}))
    async with http(service) as client:
        answers = await asyncio.gather(*(client.post("/v1/chat/completions", json=ASK) for _ in range(50)))
    codes = [a.status_code for a in answers]
    assert codes.count(200) == 10 and codes.count(429) == 40, codes
    assert all(a.headers["Retry-After"] for a in answers if a.status_code == 429)
    assert all(a.json()["error"]["code"] == "budget_exceeded" for a in answers if a.status_code == 429)
    await ledger.aclose()


async def test_a_restarted_router_still_knows_todays_spend(tmp_path):
    path = tmp_path / "ledger.sqlite3"
    service, ledger = router(path, budgets=room_for(3))
    async with http(service) as client:
        spent = [await client.post("/v1/chat/completions", json=ASK) for _ in range(2)]
        first_stats = (await client.get("/v1/colm/stats")).json()["keys"]["app"]
    await ledger.aclose()  # the replica stops
    assert [r.status_code for r in spent] == [200, 200]
    service, ledger = router(path, budgets=room_for(3))  # a new replica on the same store
    async with http(service) as client:
        stats = (await client.get("/v1/colm/stats")).json()["keys"]["app"]
        more = [await client.post("/v1/chat/completions", json=ASK) for _ in range(2)]
    assert stats["requests"] == 2 and stats["server_tokens_today"] == first_stats["server_tokens_today"] > 0
    assert [r.status_code for r in more] == [200, 429]  # the third fits today's budget, the fourth does not
    await ledger.aclose()


class FailsAfterGuidance(FakeClient):
    async def generate(self, req):
        raise ContextLengthExceeded("the prompt has 9000 tokens; the client model's context is 2048 tokens")


async def test_a_request_that_fails_after_its_guidance_was_paid_for_is_billed(tmp_path):
    service, ledger = router(tmp_path / "ledger.sqlite3", client=FailsAfterGuidance(), upstreams=FakeUpstreams())
    body = {"model": "colm", "messages": [{"role": "user", "content": "hi"}],
            "colm": {"selector": "all", "top_k": 2, "summary": "none", "iterations": 0}}
    async with http(service) as client:
        resp = await client.post("/v1/chat/completions", json=body)
        stats = (await client.get("/v1/colm/stats")).json()["keys"]["app"]
    assert resp.status_code == 400 and resp.json()["error"]["code"] == "context_length_exceeded"
    assert stats["requests"] == 1 and stats["server_tokens"] == 4 * 120 and stats["cost_usd"] > 0  # 4 guidance calls
    await ledger.aclose()


async def test_an_abandoned_colm_stream_is_billed_for_what_it_spent(tmp_path):
    """The caller leaves while the client model writes: the guidance it caused is on its bill."""
    from tests.reliability.conftest import ServedApp
    from tests.reliability.test_disconnect import EndlessClient

    service, ledger = router(tmp_path / "ledger.sqlite3", client=EndlessClient(), upstreams=FakeUpstreams())
    body = {"model": "colm", "messages": [{"role": "user", "content": "hi"}], "stream": True,
            "colm": {"selector": "all", "top_k": 2, "summary": "none", "iterations": 0}}
    with ServedApp(create_api(service)) as app:
        async with httpx.AsyncClient(timeout=30, headers={"Authorization": f"Bearer {KEY}"}) as client:
            async with client.stream("POST", f"{app.url}/v1/chat/completions", json=body) as resp:
                async for line in resp.aiter_lines():
                    if '"content"' in line and '"role"' not in line:
                        break  # the answer has begun: leave
            for _ in range(100):
                stats = (await client.get(f"{app.url}/v1/colm/stats")).json()["keys"].get("app", {})
                if stats.get("requests"):
                    break
                await asyncio.sleep(0.05)
    assert stats["requests"] == 1 and stats["server_tokens"] == 4 * 120 and stats["client_tokens"] == 0


@pytest.mark.parametrize("admin", [False, True])
async def test_stats_are_private_when_auth_is_on(tmp_path, admin):
    args = app_args(auth={"keys": [{"name": "app", "key_sha256": hash_key(KEY), "admin": admin},
                                   {"name": "other", "key_sha256": hash_key("sk-other")}]})
    ledger = Ledger(args.budgets, build_store(AccountingConfig(store="memory")))
    service = RouterService(args, upstreams=FakeUpstreams(), client=FakeClient(), ledger=ledger,
                            selectors={"llm": AllSelector(), "all": AllSelector(), "embedding": AllSelector()})
    async with http(service) as client:
        await client.post("/v1/chat/completions", json=ASK, headers={"Authorization": "Bearer sk-other"})
        await client.post("/v1/chat/completions", json=ASK)
        keys = (await client.get("/v1/colm/stats")).json()["keys"]
    assert set(keys) == ({"app", "other"} if admin else {"app"})


class CountingSink:
    def __init__(self) -> None:
        self.counts: dict[tuple[str, str, str], float] = {}

    def count(self, name, value, *, tags):
        key = (name, tags["client"], tags["model"])
        self.counts[key] = self.counts.get(key, 0) + value

    def gauge(self, name, value, *, tags):
        raise AssertionError("the router keeps no gauges")


async def test_each_settled_request_counts_its_cost_and_saving_per_key_and_strategy(tmp_path):
    args = app_args(auth={"keys": [{"name": "app", "key_sha256": hash_key(KEY)}]})
    sink = CountingSink()
    service = RouterService(args, upstreams=Servers(), client=FakeClient(), ledger=Ledger(args.budgets, build_store(
        AccountingConfig(store="memory"))), metrics=sink,
        selectors={"llm": AllSelector(), "all": AllSelector(), "embedding": AllSelector()})
    body = {"model": "colm", "messages": [{"role": "user", "content": "hi"}],
            "colm": {"strategy": "shepherd", "prefix_tokens": 8, "trace": True}}
    async with http(service) as client:
        colm = (await client.post("/v1/chat/completions", json=body)).json()["colm"]["usage"]
        await client.post("/v1/chat/completions", json=ASK)
    assert colm["baseline_estimated"] and colm["saving_usd"] == pytest.approx(colm["baseline_cost_usd"] - colm["cost_usd"])
    assert sink.counts[("requests", "app", "shepherd")] == 1 and sink.counts[("requests", "app", "server/conv")] == 1
    assert sink.counts[("cost_usd", "app", "shepherd")] == pytest.approx(colm["cost_usd"])
    kind = "saved_usd" if colm["saving_usd"] > 0 else "overspent_usd"
    assert sink.counts[(kind, "app", "shepherd")] == pytest.approx(abs(colm["saving_usd"]))
