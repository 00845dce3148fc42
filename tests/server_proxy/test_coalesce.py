"""Single-flight coalescing and the response cache, against the real sim."""

from __future__ import annotations

import asyncio
import time

import pytest

from colm_serve.deadline import Deadline
from colm_serve.errors import DeadlineExceeded, UpstreamError
from colm_serve.server_proxy.proxy import ServerProxy
from colm_serve.server_proxy.coalesce import ResponseCache, SingleFlight, call_key
from colm_serve.server_proxy.types import UpstreamReply
from tests.server_proxy.conftest import make_call
from tests.upstream_sim import Fault


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_key_depends_on_the_answer_fields_only() -> None:
    base = make_call("q")
    assert call_key(base) == call_key(make_call("q", client="other", weight=3, cache=False, deadline=1e12))
    for change in ({"model": "m2"}, {"max_tokens": 33}, {"temperature": 0.5}, {"top_p": 0.9}, {"seed": 1},
                   {"stop": ["x"]}, {"messages": [{"role": "user", "content": "q2"}]}):
        assert call_key(base) != call_key(base.model_copy(update=change)), change


def test_cache_ttl_and_lru_bound() -> None:
    clock = FakeClock()
    cache = ResponseCache(ttl_s=10, max_entries=2, clock=clock)
    for key in "abc":
        cache.put(key, UpstreamReply(text=key))
    assert cache.get("a") is None and len(cache) == 2  # evicted, least recently used
    assert cache.get("b").text == "b"
    cache.put("d", UpstreamReply(text="d"))
    assert cache.get("c") is None and cache.get("b") is not None  # b was used more recently
    clock.now += 10
    assert cache.get("b") is None and cache.get("d") is None


async def test_last_waiter_leaving_cancels_the_shared_work() -> None:
    flights: SingleFlight[str] = SingleFlight()
    started, cancelled = asyncio.Event(), asyncio.Event()

    async def work() -> str:
        started.set()
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return "never"

    with pytest.raises(DeadlineExceeded):
        await flights.run("k", work, deadline=Deadline.from_wall(time.time() + 0.1))
    await asyncio.wait_for(cancelled.wait(), 1)
    assert started.is_set() and len(flights) == 0


async def test_eight_identical_concurrent_calls_make_one_upstream_request(sim, proxy_for) -> None:
    proxy = proxy_for()
    sim.set_faults(latency_s=0.3)
    calls = [make_call("same question", client=f"app-{i % 3}", cache=False) for i in range(8)]
    replies = await asyncio.gather(*(proxy.chat(c) for c in calls))
    assert sim.stats.requests == 1
    assert len({r.text for r in replies}) == 1
    assert sum(r.coalesced for r in replies) == 7
    leader = next(r for r in replies if not r.coalesced)
    request_cost = make_call().cost(leader.prompt_tokens, leader.completion_tokens)
    # every caller that received the reply pays an equal share of the one request
    assert all(r.billed.cost_usd == pytest.approx(request_cost / 8) for r in replies)
    assert sum(r.billed.cost_usd for r in replies) == pytest.approx(request_cost)
    stats = proxy.stats()
    assert stats["upstream_calls"] == 1 and stats["coalesced"] == 7
    assert stats["saved_tokens"] == 7 * (leader.prompt_tokens + leader.completion_tokens)
    assert stats["server_tokens"] == leader.prompt_tokens + leader.completion_tokens


async def test_followers_share_the_leaders_error(sim, proxy_for) -> None:
    proxy = proxy_for()
    sim.set_faults(latency_s=0.2, always=Fault.error(400))
    results = await asyncio.gather(*(proxy.chat(make_call("bad")) for _ in range(4)), return_exceptions=True)
    assert all(isinstance(r, UpstreamError) for r in results)
    assert sim.stats.requests == 1


async def test_a_follower_leaving_early_does_not_cancel_the_leader(sim, proxy_for) -> None:
    proxy = proxy_for()
    sim.set_faults(latency_s=0.5)
    leader = asyncio.ensure_future(proxy.chat(make_call("shared")))
    await asyncio.sleep(0.1)
    with pytest.raises(DeadlineExceeded):
        await proxy.chat(make_call("shared", deadline=time.time() + 0.1))
    assert (await leader).text
    assert sim.stats.requests == 1


async def test_a_follower_with_a_long_deadline_survives_its_leaders_short_one(sim, proxy_for) -> None:
    proxy = proxy_for()
    sim.set_faults(latency_s=0.6)
    leader = asyncio.ensure_future(proxy.chat(make_call("slow one", client="hasty", deadline=time.time() + 0.2)))
    await asyncio.sleep(0.05)
    follower = await proxy.chat(make_call("slow one", client="patient", deadline=time.time() + 300))
    with pytest.raises(DeadlineExceeded):
        await leader
    assert follower.text and follower.coalesced and sim.stats.requests == 1
    # the leader left before the reply landed: the follower that got it pays for all of it
    assert follower.billed.cost_usd == pytest.approx(make_call().cost(follower.prompt_tokens, follower.completion_tokens))
    assert proxy.stats()["keys"]["patient"]["coalesced"] == 1


async def test_when_every_caller_leaves_the_sent_request_is_still_recorded(sim) -> None:
    from tests.server_proxy.conftest import server_config

    recorded: list[tuple[str, object]] = []

    async def sink(label, usage):
        recorded.append((label, usage))

    proxy = ServerProxy(server_config(sim), spend_sink=sink)
    sim.set_faults(latency_s=5)
    with pytest.raises(DeadlineExceeded):
        await proxy.chat(make_call("abandoned", client="gone", deadline=time.time() + 0.3, max_tokens=40))
    for _ in range(50):
        if recorded:
            break
        await asyncio.sleep(0.02)
    [(label, usage)] = recorded
    assert label == "gone" and usage.server_completion_tokens == 40 and usage.server_estimated_tokens > 40
    await proxy.aclose()


async def test_deterministic_calls_are_cached(sim, proxy_for) -> None:
    proxy = proxy_for()
    first = await proxy.chat(make_call("cache me"))
    second = await proxy.chat(make_call("cache me", client="someone-else"))
    assert sim.stats.requests == 1
    assert second.cached and second.text == first.text and second.cost_usd == 0 and second.attempts == 0
    seeded = make_call("seeded", temperature=0.9, seed=7)
    await proxy.chat(seeded)
    assert (await proxy.chat(seeded)).cached
    assert proxy.stats()["cache_hits"] == 2


async def test_cache_expires_after_its_ttl(sim, proxy_for) -> None:
    clock = FakeClock()
    clock.now = 1000.0
    proxy = proxy_for(proxy_kw={"clock": clock}, cache_ttl_s=5)
    await proxy.chat(make_call("ttl"))
    clock.now += 4.9
    assert (await proxy.chat(make_call("ttl"))).cached
    clock.now += 0.2
    assert not (await proxy.chat(make_call("ttl"))).cached
    assert sim.stats.requests == 2


async def test_cache_opt_out_and_sampled_calls_go_upstream(sim, proxy_for) -> None:
    proxy = proxy_for()
    await proxy.chat(make_call("private", cache=False))
    assert not (await proxy.chat(make_call("private", cache=False))).cached
    await proxy.chat(make_call("sampled", temperature=0.7))
    assert not (await proxy.chat(make_call("sampled", temperature=0.7))).cached
    assert sim.stats.requests == 4
    assert proxy.stats()["cache_hits"] == 0
