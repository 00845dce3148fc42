"""Token buckets: exact waits, deadlines, and the rpm limit in front of the real sim."""

from __future__ import annotations

import asyncio
import time

import pytest

from colm_serve.deadline import Deadline
from colm_serve.errors import DeadlineExceeded
from colm_serve.server_proxy.limits import TokenBucket, estimate_tokens
from tests.server_proxy.conftest import make_call


async def test_bucket_waits_until_tokens_exist() -> None:
    bucket = TokenBucket(600, burst_s=0.5)  # 10 per second, 5 at once
    started = time.monotonic()
    for _ in range(8):
        await bucket.take(1, Deadline(None))
    elapsed = time.monotonic() - started
    assert 0.25 <= elapsed < 1.5  # 3 beyond the burst at 0.1 s each


async def test_bucket_refuses_a_wait_beyond_the_deadline_at_once() -> None:
    bucket = TokenBucket(60, burst_s=1)  # one per second
    await bucket.take(1, Deadline(None))
    started = time.monotonic()
    with pytest.raises(DeadlineExceeded):
        await bucket.take(1, Deadline(time.monotonic() + 0.2))
    assert time.monotonic() - started < 0.1


async def test_refund_and_debt_move_the_level() -> None:
    bucket = TokenBucket(6000, burst_s=1)  # capacity 100
    await bucket.take(80, Deadline(None))
    bucket.adjust(-50)  # the call used 50 fewer than estimated
    assert bucket.level() == pytest.approx(70, abs=1)
    bucket.adjust(200)  # underestimated: debt
    assert bucket.level() < 0


def test_estimate_counts_text_and_completion_budget() -> None:
    call = make_call("x" * 400, max_tokens=50)
    assert estimate_tokens(call) == 4 + 100 + 50
    image = make_call(messages=[{"role": "user", "content": [{"type": "text", "text": "abcd"},
                                                              {"type": "image_url", "image_url": {"url": "u"}}]}])
    assert estimate_tokens(image) == 4 + 1 + 256 + 32


async def test_rpm_bucket_paces_upstream_calls(sim, proxy_for) -> None:
    proxy = proxy_for(rpm=120)  # 2 per second; a full bucket holds 20
    started = time.monotonic()
    replies = await asyncio.gather(*(proxy.chat(make_call(f"rpm {i}", cache=False)) for i in range(23)))
    elapsed = time.monotonic() - started
    assert all(r.text for r in replies)
    assert sim.stats.requests == 23
    assert elapsed >= 1.2  # the last 3 wait 0.5 s each
    assert elapsed < 6
