"""Circuit breaker state machine on a fake clock, then against the real sim."""

from __future__ import annotations

import asyncio

import pytest

from colm_serve.config import BreakerConfig, RetryPolicy
from colm_serve.errors import ServiceUnavailable, UpstreamError
from colm_serve.server_proxy.breaker import CLOSED, HALF_OPEN, OPEN, CircuitBreaker
from tests.server_proxy.conftest import make_call
from tests.upstream_sim import Fault


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _breaker(clock: FakeClock) -> CircuitBreaker:
    return CircuitBreaker(BreakerConfig(failure_threshold=3, window_s=10, reset_timeout_s=5), server="s", clock=clock)


def test_opens_after_threshold_failures_within_window() -> None:
    clock = FakeClock()
    breaker = _breaker(clock)
    breaker.failure()
    clock.now += 11  # the first failure leaves the window
    breaker.failure()
    breaker.failure()
    assert breaker.state == CLOSED
    breaker.failure()
    assert breaker.state == OPEN
    with pytest.raises(ServiceUnavailable) as caught:
        breaker.acquire()
    assert caught.value.code == "circuit_open"
    assert int(caught.value.headers["Retry-After"]) == 5


def test_a_busy_healthy_server_stays_closed_through_a_few_failures() -> None:
    clock = FakeClock()
    breaker = _breaker(clock)
    for _ in range(20):
        clock.now += 0.1
        breaker.success()
    for _ in range(5):
        breaker.failure("connection")
    assert breaker.state == CLOSED  # 5 failures of 25 attempts: under the 50% rate
    for _ in range(15):
        breaker.failure("timeout")
    assert breaker.state == OPEN  # 20 of 40


def test_successes_leave_the_window_too() -> None:
    clock = FakeClock()
    breaker = _breaker(clock)
    for _ in range(100):
        breaker.success()
    clock.now += 11
    for _ in range(3):
        breaker.failure()
    assert breaker.state == OPEN


def test_opening_logs_the_failures_that_counted_by_kind(caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    breaker = _breaker(clock)
    breaker.success()
    with caplog.at_level("WARNING", logger="colm_serve.server_proxy"):
        for kind in ("timeout", "http 502", "timeout"):
            breaker.failure(kind)
    assert breaker.state == OPEN
    assert "3 of 4 attempts in the last 10 s failed (timeout x2, http 502 x1)" in caplog.text


def test_half_open_lets_one_probe_and_its_outcome_decides() -> None:
    clock = FakeClock()
    breaker = _breaker(clock)
    for _ in range(3):
        breaker.failure()
    clock.now += 5
    assert breaker.state == HALF_OPEN
    breaker.acquire()  # the probe
    with pytest.raises(ServiceUnavailable):
        breaker.acquire()  # a second caller while the probe is out
    breaker.failure()
    assert breaker.state == OPEN  # failed probe re-opens for a full reset period
    clock.now += 4.9
    assert breaker.state == OPEN
    clock.now += 0.1
    breaker.acquire()
    breaker.success()
    assert breaker.state == CLOSED
    breaker.acquire()
    breaker.acquire()  # closed: no limit on attempts


def test_released_probe_frees_half_open_for_the_next_caller() -> None:
    clock = FakeClock()
    breaker = _breaker(clock)
    for _ in range(3):
        breaker.failure()
    clock.now += 5
    breaker.acquire()
    breaker.release()  # e.g. the probe was cancelled or answered 429
    breaker.acquire()
    assert breaker.state == HALF_OPEN


async def test_breaker_opens_and_recovers_through_half_open_against_the_sim(
    sim, proxy_for, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("WARNING", logger="colm_serve.server_proxy")
    proxy = proxy_for(
        retry=RetryPolicy(max_attempts=1),
        breaker=BreakerConfig(failure_threshold=3, window_s=30, reset_timeout_s=0.5),
    )
    sim.set_faults(always=Fault.error(500))
    for i in range(3):
        with pytest.raises(UpstreamError):
            await proxy.chat(make_call(f"q{i}"))
    assert proxy.stats()["breaker"] == "open"
    assert "3 of 3 attempts in the last 30 s failed (http 500 x3)" in caplog.text
    with pytest.raises(ServiceUnavailable):
        await proxy.chat(make_call("refused fast"))
    assert sim.stats.requests == 3  # the open breaker sent nothing

    await asyncio.sleep(0.6)
    with pytest.raises(UpstreamError):
        await proxy.chat(make_call("failing probe"))
    assert proxy.stats()["breaker"] == "open"
    assert sim.stats.requests == 4

    sim.set_faults(always=None)
    await asyncio.sleep(0.6)
    reply = await proxy.chat(make_call("healthy probe"))
    assert reply.text
    assert proxy.stats()["breaker"] == "closed"
    assert (await proxy.chat(make_call("after recovery"))).text
    assert sim.stats.requests == 6
