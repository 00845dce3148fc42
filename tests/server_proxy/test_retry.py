"""The retry loop: what is retried, how long it waits, and what leaves it."""

from __future__ import annotations

import email.utils
import json
import random
import time

import pytest

from colm_serve.config import RetryPolicy
from colm_serve.errors import DeadlineExceeded, UpstreamError
from colm_serve.server_proxy.retry import backoff_s, parse_retry_after, redact
from tests.server_proxy.conftest import make_call, server_config
from tests.upstream_sim import Fault, UpstreamSim


def test_parse_retry_after_seconds_date_and_garbage() -> None:
    assert parse_retry_after("2") == 2.0
    assert parse_retry_after("0.5") == 0.5
    now = time.time()
    date = email.utils.formatdate(now + 30, usegmt=True)
    assert parse_retry_after(date, now=now) == pytest.approx(30, abs=1)
    assert parse_retry_after(email.utils.formatdate(now - 30, usegmt=True), now=now) == 0.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None


def test_full_jitter_stays_within_the_exponential_cap() -> None:
    policy = RetryPolicy(backoff_base_s=0.5, backoff_max_s=4)
    rng = random.Random(1)
    for retry, cap in ((0, 0.5), (1, 1.0), (2, 2.0), (5, 4.0)):
        waits = [backoff_s(policy, retry, rng=rng) for _ in range(200)]
        assert all(0 <= w <= cap for w in waits)
        assert max(waits) > cap * 0.8  # jitter covers the range, not a fixed value


def test_redact_removes_our_key_and_key_shaped_strings() -> None:
    text = redact("bad key sk-proj-abcdef123456 and Bearer tok.en and mysecret99", ["mysecret99"])
    assert "abcdef" not in text and "tok.en" not in text and "mysecret99" not in text


async def test_retry_after_seconds_is_honoured(sim, proxy_for) -> None:
    proxy = proxy_for()
    sim.set_faults(script=[Fault.error(429, retry_after="1")])
    started = time.monotonic()
    reply = await proxy.chat(make_call())
    elapsed = time.monotonic() - started
    assert reply.attempts == 2
    assert 1.0 <= elapsed < 3.0
    assert sim.stats.requests == 2
    assert proxy.stats()["retries"] == 1 and proxy.stats()["upstream_calls"] == 2


async def test_retry_after_http_date_is_honoured(sim, proxy_for) -> None:
    proxy = proxy_for()
    sim.set_faults(script=[Fault.error(503, retry_after=email.utils.formatdate(time.time() + 2, usegmt=True))])
    started = time.monotonic()
    assert (await proxy.chat(make_call())).attempts == 2
    assert 0.9 <= time.monotonic() - started < 4.0  # the date has whole-second resolution


async def test_retry_after_beyond_the_ceiling_gives_up_at_once(sim, proxy_for) -> None:
    proxy = proxy_for()  # max_retry_after_s=5
    sim.set_faults(script=[Fault.error(429, retry_after="120")])
    started = time.monotonic()
    with pytest.raises(UpstreamError) as caught:
        await proxy.chat(make_call())
    assert time.monotonic() - started < 1.0
    assert caught.value.code == "upstream_429"
    assert sim.stats.requests == 1


@pytest.mark.parametrize("status", [400, 401, 404, 422])
async def test_other_4xx_are_not_retried(sim, proxy_for, status) -> None:
    proxy = proxy_for()
    sim.set_faults(always=Fault.error(status, message="your request is wrong"))
    with pytest.raises(UpstreamError) as caught:
        await proxy.chat(make_call())
    assert sim.stats.requests == 1
    assert caught.value.code == f"upstream_{status}"
    assert f"upstream answered {status}: your request is wrong" in caught.value.message
    assert proxy.stats()["breaker"] == "closed"  # a 4xx proves the server alive


@pytest.mark.parametrize("fault", [Fault.error(408), Fault.error(409), Fault.error(500), Fault.error(502),
                                   Fault.drop(), Fault.hang()])
async def test_retryable_failures_are_retried_then_answered(sim, proxy_for, fault) -> None:
    proxy = proxy_for(timeout_s=0.5)
    sim.set_faults(script=[fault, fault])
    reply = await proxy.chat(make_call())
    assert reply.attempts == 3
    assert reply.text
    assert sim.stats.requests == 3


async def test_exhausted_retries_raise_upstream_error(sim, proxy_for) -> None:
    proxy = proxy_for(retry=RetryPolicy(max_attempts=3, backoff_base_s=0.01))
    sim.set_faults(always=Fault.error(503))
    with pytest.raises(UpstreamError) as caught:
        await proxy.chat(make_call())
    assert caught.value.code == "upstream_503"
    assert "after 3 attempts" in caught.value.message
    assert sim.stats.requests == 3


async def test_deadline_stops_retries(sim, proxy_for) -> None:
    proxy = proxy_for(retry=RetryPolicy(max_attempts=10, backoff_base_s=0.01, max_retry_after_s=60))
    sim.set_faults(always=Fault.error(429, retry_after="2"))
    started = time.monotonic()
    with pytest.raises(DeadlineExceeded):
        await proxy.chat(make_call(deadline=time.time() + 1.0))
    assert time.monotonic() - started < 1.5  # it did not sleep into the deadline
    assert sim.stats.requests == 1


async def test_deadline_cuts_a_hanging_attempt(sim, proxy_for) -> None:
    proxy = proxy_for(timeout_s=30)
    sim.set_faults(always=Fault.hang())
    started = time.monotonic()
    with pytest.raises(DeadlineExceeded):
        await proxy.chat(make_call(deadline=time.time() + 0.5))
    assert time.monotonic() - started < 2.0
    assert proxy.stats()["breaker"] == "closed"  # our deadline is no verdict on the server


async def test_keys_never_leave_in_errors_or_stats(monkeypatch) -> None:
    from colm_serve.server_proxy.proxy import ServerProxy

    secret = "sk-live-SECRET0123456789"
    monkeypatch.setenv("SIM_TEST_KEY", secret)
    with UpstreamSim(api_key="sk-the-right-one") as locked:
        proxy = ServerProxy(server_config(locked, api_key_env="SIM_TEST_KEY"))
        try:
            with pytest.raises(UpstreamError) as caught:
                await proxy.chat(make_call(client="app-1"))
            assert caught.value.code == "upstream_401"
            dumped = json.dumps(caught.value.body()) + str(caught.value) + json.dumps(proxy.stats())
            assert secret not in dumped and "SECRET" not in dumped
            assert "app-1" in proxy.stats()["keys"]
        finally:
            await proxy.aclose()
