"""The ServerProxy end to end over real HTTP: no call lost, streaming, cost, stats."""

from __future__ import annotations

import asyncio
import random
import time

import pytest

from colm_serve.config import RetryPolicy
from colm_serve.errors import ColmError, DeadlineExceeded, InvalidRequest, UpstreamError
from colm_serve.server_proxy.types import UpstreamDelta, UpstreamReply
from tests.server_proxy.conftest import make_call
from tests.upstream_sim import Fault, reply_words

STATS_FIELDS = {"upstream_calls", "coalesced", "cache_hits", "retries", "server_tokens", "cost_usd",
                "queue_depth", "in_flight", "max_concurrency", "breaker"}


async def test_no_call_is_lost_under_mixed_faults(sim, proxy_for) -> None:
    proxy = proxy_for(max_concurrency=4, queue_limit=100, timeout_s=0.5,
                          retry=RetryPolicy(max_attempts=2, backoff_base_s=0.01))
    menu = [Fault.error(500), Fault.error(503), Fault.error(429, retry_after="0.1"), Fault.error(400),
            Fault.drop(), Fault.hang(), None, None, None, None]
    rng = random.Random(3)
    sim.set_faults(script=[f for f in (rng.choice(menu) for _ in range(80)) if f], latency_s=0.01)
    calls = [make_call(f"q{i}", client=f"app-{i % 4}", cache=False) for i in range(40)]
    results = await asyncio.wait_for(asyncio.gather(*(proxy.chat(c) for c in calls), return_exceptions=True), 60)

    answers = [r for r in results if isinstance(r, UpstreamReply)]
    errors = [r for r in results if not isinstance(r, UpstreamReply)]
    assert all(isinstance(e, ColmError) and e.message for e in errors), errors
    assert all(a.text for a in answers)
    assert answers and errors  # the menu produces both
    stats = proxy.stats()
    assert stats["requests"] == 40 and stats["errors"] == len(errors)
    assert stats["upstream_calls"] == sim.stats.requests
    assert stats["in_flight"] == 0 and stats["queue_depth"] == 0


async def test_reply_carries_usage_and_cost(sim, proxy_for) -> None:
    proxy = proxy_for()
    reply = await proxy.chat(make_call("price me", max_tokens=5))
    assert reply.text == " ".join(reply_words("sim-model", "price me")[:5])
    assert reply.finish_reason == "length" and reply.completion_tokens == 5
    assert reply.prompt_tokens == 2 + 3
    assert reply.cost_usd == pytest.approx((5 * 1.0 + 5 * 2.0) / 1e6)
    assert proxy.stats()["cost_usd"] == pytest.approx(reply.cost_usd)
    assert sim.stats.log[0].body["max_tokens"] == 5 and "seed" not in sim.stats.log[0].body


async def test_provider_extensions_are_merged_into_the_body_not_sent_as_extra_body(sim, proxy_for) -> None:
    proxy = proxy_for()
    await proxy.chat(make_call("write it all", max_tokens=5, extra_body={"ignore_eos": True, "min_tokens": 5}))
    body = sim.stats.log[0].body
    assert body["ignore_eos"] is True and body["min_tokens"] == 5 and "extra_body" not in body


async def test_stats_follow_the_contract_per_server_and_key(sim, proxy_for) -> None:
    proxy = proxy_for(max_concurrency=3)
    await proxy.chat(make_call("a", client="app-a"))
    await proxy.chat(make_call("a", client="app-b"))
    stats = proxy.stats()
    assert STATS_FIELDS <= set(stats)
    assert stats["max_concurrency"] == 3 and stats["breaker"] == "closed"
    assert stats["keys"]["app-a"]["upstream_calls"] == 1 and stats["keys"]["app-b"]["cache_hits"] == 1
    assert stats["keys"]["app-b"]["server_tokens"] == 0 and stats["keys"]["app-b"]["saved_tokens"] > 0


async def test_a_call_for_another_server_is_refused(proxy_for) -> None:
    proxy = proxy_for()
    with pytest.raises(InvalidRequest):
        await proxy.chat(make_call(server="elsewhere"))
    await proxy.check_health()


async def _collect(proxy, call) -> list[UpstreamDelta]:
    return [d async for d in proxy.chat_stream(call)]


async def test_stream_passes_text_through_and_ends_with_counts(sim, proxy_for) -> None:
    proxy = proxy_for()
    deltas = await _collect(proxy, make_call("stream me"))
    text = "".join(d.text for d in deltas)
    assert text == " ".join(reply_words("sim-model", "stream me"))
    last = deltas[-1]
    assert last.finish_reason == "stop" and last.completion_tokens == 12 and last.prompt_tokens == 5
    assert last.cost_usd == pytest.approx((5 + 24) / 1e6)
    assert sim.stats.log[0].body["stream_options"] == {"include_usage": True}
    stats = proxy.stats()
    assert stats["server_tokens"] == 17 and stats["in_flight"] == 0


async def test_stream_retries_before_the_first_byte(sim, proxy_for) -> None:
    proxy = proxy_for()
    sim.set_faults(script=[Fault.error(500), Fault.error(429, retry_after="0.1"), Fault.drop(after_chunks=0)])
    deltas = await _collect(proxy, make_call("retry stream"))
    assert "".join(d.text for d in deltas) == " ".join(reply_words("sim-model", "retry stream"))
    assert sim.stats.requests == 4 and proxy.stats()["retries"] == 3


async def test_stream_broken_after_the_first_byte_is_an_error_not_a_retry(sim, proxy_for) -> None:
    proxy = proxy_for()
    sim.set_faults(script=[Fault.drop(after_chunks=4)])
    received = []
    with pytest.raises(UpstreamError) as caught:
        async for delta in proxy.chat_stream(make_call("break me")):
            received.append(delta)
    assert received and caught.value.code == "upstream_stream_broken"
    assert sim.stats.requests == 1 and proxy.stats()["in_flight"] == 0


async def test_a_consumer_leaving_a_stream_frees_its_slot(sim, proxy_for) -> None:
    proxy = proxy_for(max_concurrency=1)
    sim.set_faults(token_latency_s=0.05)
    stream = proxy.chat_stream(make_call("long"))
    async for _ in stream:
        break
    await stream.aclose()
    assert proxy.stats()["in_flight"] == 0
    assert (await proxy.chat(make_call("next", cache=False))).text


async def test_stream_respects_the_deadline_between_chunks(sim, proxy_for) -> None:
    proxy = proxy_for()
    sim.set_faults(token_latency_s=0.02)
    ok = await _collect(proxy, make_call("in time", deadline=time.time() + 10))
    assert ok[-1].finish_reason == "stop"
    sim.set_faults(token_latency_s=0.25)  # the whole answer would take 3.5 s
    received = []
    started = time.monotonic()
    with pytest.raises(DeadlineExceeded):
        async for delta in proxy.chat_stream(make_call("too slow", deadline=time.time() + 1.0)):
            received.append(delta)
    assert time.monotonic() - started < 2.0
    assert received and not any(d.finish_reason for d in received)  # it had begun, and was cut
    assert proxy.stats()["in_flight"] == 0
