"""Fair admission: the queue order, the queue bound, and a flood against the real sim."""

from __future__ import annotations

import asyncio
import statistics
import time

import pytest

from colm_serve.deadline import Deadline
from colm_serve.errors import DeadlineExceeded, RateLimited
from colm_serve.server_proxy.proxy import ServerProxy
from colm_serve.fairness import FairQueue
from tests.server_proxy.conftest import make_call, server_config
from tests.upstream_sim import UpstreamSim

NO_DEADLINE = Deadline(None)


async def _admit_order(queue: FairQueue, arrivals: list[tuple[str, float]]) -> list[str]:
    """Fill the only slot, queue `arrivals`, then record the order in which they get in."""
    order: list[str] = []

    async def one(client: str, weight: float) -> None:
        async with queue.slot(client, weight, NO_DEADLINE):
            order.append(client)

    async with queue.slot("blocker", 1, NO_DEADLINE):
        tasks = [asyncio.ensure_future(one(c, w)) for c, w in arrivals]
        await asyncio.sleep(0)  # let every arrival enqueue before the slot frees
    await asyncio.gather(*tasks)
    return order


async def test_a_newcomer_overtakes_a_flood() -> None:
    queue = FairQueue(max_concurrency=1, queue_limit=100)
    order = await _admit_order(queue, [("heavy", 1)] * 10 + [("light", 1)])
    assert order.index("light") <= 1


async def test_weights_share_the_slots_in_proportion() -> None:
    queue = FairQueue(max_concurrency=1, queue_limit=100)
    order = await _admit_order(queue, [("a", 1)] * 30 + [("b", 3)] * 30)
    first = order[:20]
    assert first.count("b") == pytest.approx(15, abs=2)  # 3:1 while both have work


async def test_a_full_queue_refuses_with_retry_after() -> None:
    queue = FairQueue(max_concurrency=1, queue_limit=2)
    async with queue.slot("x", 1, NO_DEADLINE):
        waiting = [asyncio.ensure_future(queue.slot("x", 1, NO_DEADLINE).__aenter__()) for _ in range(2)]
        await asyncio.sleep(0)
        with pytest.raises(RateLimited) as caught:
            async with queue.slot("y", 1, NO_DEADLINE):
                pass
        assert caught.value.code == "queue_full" and int(caught.value.headers["Retry-After"]) >= 1
        assert queue.waiting == 2
        for task in waiting:
            task.cancel()
    await asyncio.gather(*waiting, return_exceptions=True)
    assert queue.waiting == 0 and queue.in_flight == 0


async def test_a_deadline_in_the_queue_gives_up_and_frees_its_place() -> None:
    queue = FairQueue(max_concurrency=1, queue_limit=5)
    async with queue.slot("x", 1, NO_DEADLINE):
        with pytest.raises(DeadlineExceeded):
            async with queue.slot("y", 1, Deadline(time.monotonic() + 0.05)):
                pass
        assert queue.waiting == 0
    assert queue.in_flight == 0


async def _light_then_flood(queue: FairQueue, heavy: int) -> tuple[list[str], list[asyncio.Future], asyncio.Event]:
    """Two slots: the light client holds one and frees it once the heavy client holds the other
    and has queued the rest of its `heavy` calls; heavy's calls each last until `release`."""
    order: list[str] = []
    release = asyncio.Event()

    async def one_heavy() -> None:
        async with queue.slot("heavy", 1, NO_DEADLINE):
            order.append("heavy")
            await release.wait()

    async with queue.slot("light", 1, NO_DEADLINE):
        tasks = [asyncio.ensure_future(one_heavy()) for _ in range(heavy)]
        await asyncio.sleep(0)
    return order, tasks, release


async def test_a_light_client_coming_back_gets_its_kept_slot_ahead_of_the_flood() -> None:
    queue = FairQueue(max_concurrency=2, queue_limit=100, anticipate_s=0.5)
    order, tasks, release = await _light_then_flood(queue, heavy=6)
    assert queue.kept == 1 and order == ["heavy"]  # the flood did not take the freed slot
    await asyncio.sleep(0.05)  # its answer travels back; its next request comes
    started = time.monotonic()
    async with queue.slot("light", 1, NO_DEADLINE):
        assert time.monotonic() - started < 0.05 and queue.kept == 0
    release.set()
    await asyncio.gather(*tasks)
    assert queue.in_flight == 0 and queue.waiting == 0 and queue.kept == 0


async def test_a_kept_slot_goes_to_the_queue_when_its_client_does_not_come_back() -> None:
    queue = FairQueue(max_concurrency=2, queue_limit=100, anticipate_s=0.05)
    order, tasks, release = await _light_then_flood(queue, heavy=6)
    assert order == ["heavy"]
    await asyncio.sleep(0.1)
    assert order == ["heavy", "heavy"] and queue.kept == 0  # capacity is not lost for longer
    release.set()
    await asyncio.gather(*tasks)


async def test_nothing_is_kept_for_a_client_with_calls_queued() -> None:
    queue = FairQueue(max_concurrency=1, queue_limit=100, anticipate_s=5.0)
    order = await _admit_order(queue, [("heavy", 1)] * 3 + [("light", 1)])
    assert queue.kept == 0 and len(order) == 4  # the flood's freed slots went on at once


async def test_nothing_is_kept_for_a_client_above_its_share() -> None:
    queue = FairQueue(max_concurrency=2, queue_limit=100, anticipate_s=5.0)
    first, second = queue.slot("light", 1, NO_DEADLINE), queue.slot("light", 1, NO_DEADLINE)
    await first.__aenter__()
    await second.__aenter__()
    heavy = asyncio.ensure_future(queue.slot("heavy", 1, NO_DEADLINE).__aenter__())
    await asyncio.sleep(0)
    await first.__aexit__(None, None, None)  # light keeps 1 slot, its share of 2 between two
    await asyncio.wait_for(heavy, 1)
    assert queue.kept == 0
    await second.__aexit__(None, None, None)


async def test_with_nobody_waiting_nothing_is_kept() -> None:
    queue = FairQueue(max_concurrency=2, queue_limit=100, anticipate_s=5.0)
    async with queue.slot("light", 1, NO_DEADLINE):
        pass
    assert queue.kept == 0 and queue.in_flight == 0


async def test_queue_full_at_the_proxy_answers_429_and_loses_no_admitted_call(sim, proxy_for) -> None:
    proxy = proxy_for(max_concurrency=1, queue_limit=2)
    sim.set_faults(latency_s=0.3)
    admitted = [asyncio.ensure_future(proxy.chat(make_call(f"q{i}", cache=False))) for i in range(3)]
    await asyncio.sleep(0.1)
    assert proxy.stats()["queue_depth"] == 2 and proxy.stats()["in_flight"] == 1
    with pytest.raises(RateLimited) as caught:
        await proxy.chat(make_call("one too many"))
    assert caught.value.status == 429 and "Retry-After" in caught.value.headers
    replies = await asyncio.gather(*admitted)
    assert all(r.text for r in replies)
    assert sim.stats.max_in_flight == 1


def _p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20)[-1]


async def _light_latencies(proxy, count: int) -> list[float]:
    latencies = []
    for i in range(count):
        started = time.monotonic()
        await proxy.chat(make_call(f"light {i}", client="light", cache=False))
        latencies.append(time.monotonic() - started)
    return latencies


async def test_a_flooding_client_does_not_starve_a_light_one(sim, proxy_for) -> None:
    """The light client's unloaded p95 is measured at the same moments, by a twin light
    client on an idle server (its own sim): the box is shared, its load drifts, and only a
    paired measurement tells queueing apart from the machine being busy."""
    light_count = 12
    latency = 0.2
    # Latency well above our own CPU time per call. The first heavy calls arrive a quarter
    # latency apart (as a real flood builds up), so the 4 slots free at spread-out moments
    # instead of in lockstep; a little jitter keeps it from looking like a metronome.
    faults = {"latency_s": latency, "jitter_s": 0.02}
    sim.set_faults(**faults)
    shared = proxy_for(max_concurrency=4, queue_limit=1000)
    with UpstreamSim(seed=1) as idle_sim:
        idle_sim.set_faults(**faults)
        idle = ServerProxy(server_config(idle_sim, max_concurrency=4))
        try:
            for proxy in (shared, idle):  # connections set up before measuring
                await proxy.chat(make_call("warm-up", client="light", cache=False))
            heavy = []
            for i in range(10 * light_count):
                heavy.append(asyncio.ensure_future(shared.chat(make_call(f"heavy {i}", client="heavy", cache=False))))
                if i < 4:
                    await asyncio.sleep(latency / 4)
            loaded, unloaded = await asyncio.gather(
                _light_latencies(shared, light_count), _light_latencies(idle, light_count)
            )
            heavy_replies = await asyncio.gather(*heavy)
        finally:
            await idle.aclose()

    print(f"light p95 unloaded {_p95(unloaded):.3f}s, under a 10x flood {_p95(loaded):.3f}s")
    assert all(r.text for r in heavy_replies)
    assert _p95(loaded) <= 2 * _p95(unloaded), (loaded, unloaded)
    assert sim.stats.max_in_flight <= 4
    assert sim.stats.requests == 11 * light_count + 1
    keys = shared.stats()["keys"]
    assert keys["light"]["upstream_calls"] == light_count + 1
    assert keys["heavy"]["upstream_calls"] == 10 * light_count
