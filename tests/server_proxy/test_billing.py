"""Every upstream attempt is billed to the client app that caused it, over real HTTP."""

from __future__ import annotations

import asyncio

import pytest

from colm_serve.errors import UpstreamError
from colm_serve.server_proxy.billing import share, worst_case
from colm_serve.server_proxy.proxy import ServerProxy
from tests.server_proxy.conftest import make_call, server_config
from tests.upstream_sim import Fault


class Sink:
    def __init__(self) -> None:
        self.recorded: list[tuple[str, object]] = []

    async def __call__(self, label, usage) -> None:
        self.recorded.append((label, usage))

    async def wait(self, count: int = 1) -> None:
        for _ in range(100):
            if len(self.recorded) >= count:
                return
            await asyncio.sleep(0.02)
        raise AssertionError(f"{len(self.recorded)} of {count} records arrived")


async def test_a_retried_timeout_is_billed_with_the_answer(sim, proxy_for) -> None:
    proxy = proxy_for(timeout_s=0.3)
    sim.set_faults(script=[Fault.hang(hang_s=2)])
    call = make_call("slow at first", max_tokens=32, cache=False)
    reply = await proxy.chat(call)
    assert reply.attempts == 2 and sim.stats.requests == 2
    lost = worst_case(call)
    own = call.spend(reply.prompt_tokens, reply.completion_tokens)
    assert reply.billed.server_tokens == own.server_tokens + lost.server_tokens
    assert reply.billed.cost_usd == pytest.approx(own.cost_usd + lost.cost_usd)
    assert reply.billed.server_estimated_tokens == lost.server_tokens


async def test_a_call_that_times_out_every_time_carries_its_bill_on_the_error(sim, proxy_for) -> None:
    proxy = proxy_for(timeout_s=0.2, coalesce=False)
    sim.set_faults(always=Fault.hang(hang_s=2))
    call = make_call("never answers", max_tokens=16, cache=False)
    with pytest.raises(UpstreamError) as err:
        await proxy.chat(call)
    attempts = proxy.server.retry.max_attempts
    assert err.value.billed.server_tokens == attempts * worst_case(call).server_tokens


async def test_a_stream_its_reader_abandons_is_billed_to_its_client(sim) -> None:
    sink = Sink()
    proxy = ServerProxy(server_config(sim), spend_sink=sink)
    sim.set_faults(latency_s=0.05)
    stream = proxy.chat_stream(make_call("stream then leave", client="leaver", max_tokens=64))
    first = await anext(stream)
    assert first.text
    await stream.aclose()  # the reader goes away mid-stream
    await sink.wait()
    [(label, usage)] = sink.recorded
    assert label == "leaver" and usage.server_completion_tokens == 64 and usage.cost_usd > 0
    assert proxy.stats()["keys"]["leaver"]["server_tokens"] == usage.server_tokens
    await proxy.aclose()


async def test_a_finished_stream_is_billed_once_on_its_last_delta(sim) -> None:
    sink = Sink()
    proxy = ServerProxy(server_config(sim), spend_sink=sink)
    deltas = [d async for d in proxy.chat_stream(make_call("whole stream"))]
    assert deltas[-1].billed is not None and deltas[-1].billed.cost_usd > 0
    await asyncio.sleep(0.05)
    assert sink.recorded == []
    await proxy.aclose()


def test_shares_add_up_to_the_whole() -> None:
    whole = make_call().spend(101, 33)
    parts = [share(whole, 3)] * 3
    assert sum(p.cost_usd for p in parts) == pytest.approx(whole.cost_usd)
    assert abs(sum(p.server_tokens for p in parts) - whole.server_tokens) <= 3


@pytest.mark.parametrize("model", ["gpt-4o-cached", "deepseek-chat"])
async def test_cached_prompt_tokens_are_billed_at_the_cached_price(sim, proxy_for, model) -> None:
    proxy = proxy_for()
    call = make_call("a question long enough to have a cached prefix in it", model=model, cache=False,
                     price_in_per_m=2.0, price_cached_in_per_m=0.5, price_out_per_m=8.0)
    reply = await proxy.chat(call)
    assert reply.cached_prompt_tokens == reply.prompt_tokens // 2 > 0
    fresh = reply.prompt_tokens - reply.cached_prompt_tokens
    expected = (fresh * 2.0 + reply.cached_prompt_tokens * 0.5 + reply.completion_tokens * 8.0) / 1e6
    assert reply.billed.cost_usd == pytest.approx(expected)
    assert reply.billed.server_cached_prompt_tokens == reply.cached_prompt_tokens
    streamed = [d async for d in proxy.chat_stream(call)][-1]
    assert streamed.billed.server_cached_prompt_tokens == reply.cached_prompt_tokens


async def test_the_apps_recorder_has_written_an_abandoned_streams_spend_once_the_proxy_closes(sim, tmp_path) -> None:
    """As the app wires it: a factory that crosses Ray, a recorder over the shared sqlite store.
    Its writes are queued; closing the proxy writes them and closes the recorder's ledger."""
    from colm_serve.accounting.ledger import Ledger, SpendRecorder
    from colm_serve.accounting.stores import build_store
    from colm_serve.config import AccountingConfig, BudgetConfig

    accounting = AccountingConfig(store="sqlite", path=tmp_path / "ledger.sqlite3")
    made: list[SpendRecorder] = []

    def factory() -> SpendRecorder:
        made.append(SpendRecorder(accounting.model_dump(mode="json")))
        return made[-1]

    proxy = ServerProxy(server_config(sim), spend_sink=factory)
    stream = proxy.chat_stream(make_call("stream then leave", client="leaver", max_tokens=64))
    assert (await anext(stream)).text
    await stream.aclose()
    await proxy.aclose()
    with pytest.raises(RuntimeError, match="closed"):
        await made[0]("late", make_call().spend(1, 1))
    reader = Ledger(BudgetConfig(), build_store(accounting))
    try:
        row = (await reader.stats())["leaver"]
    finally:
        await reader.aclose()
    assert row["server_tokens"] == proxy.stats()["keys"]["leaver"]["server_tokens"] > 0
    assert row["requests"] == 0  # spend no request settled: it adds to the bill, not to the count
