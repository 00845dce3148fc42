"""Settling: however a request ends, its reservation is released and its actual spend
recorded; write-behind batches where safe, waits where the budget must see the spend now."""

from __future__ import annotations

import asyncio

import pytest

from colm_serve.accounting.ledger import Estimate, Ledger
from colm_serve.accounting.stores import MemoryStore
from colm_serve.protocol.usage import Usage
from tests.accounting.conftest import Clock

BUDGET = {"server_tokens_per_day": 1000}
HALF = Estimate(server_tokens=600)


async def test_settle_after_a_failure_releases_the_reservation_and_records_the_spend(open_store):
    ledger = Ledger(BUDGET, open_store(), clock=Clock())
    failed = await ledger.admit("app", HALF)
    assert not (await ledger.admit("app", HALF)).ok  # held by the first
    await ledger.settle(failed, Usage(server_prompt_tokens=100))  # one upstream call, then an error
    await ledger.flush()
    assert (await ledger.admit("app", HALF)).ok  # 100 spent + 600 <= 1000
    row = (await ledger.stats())["app"]
    assert (row["requests"], row["server_tokens"], row["server_tokens_today"]) == (1, 100, 100)
    await ledger.aclose()


async def test_a_cancelled_request_settles_from_its_finally(open_store):
    ledger = Ledger(BUDGET, open_store(), clock=Clock())
    waiting = asyncio.Event()

    async def request() -> None:
        admission = await ledger.admit("app", HALF)
        spent = Usage()
        try:
            spent = Usage(server_prompt_tokens=50)  # the first upstream call came back
            waiting.set()
            await asyncio.Event().wait()  # the client goes away while the second one runs
        finally:
            await ledger.settle(admission, spent)

    task = asyncio.create_task(request())
    await waiting.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await ledger.flush()
    assert (await ledger.admit("app", HALF)).ok
    assert (await ledger.stats())["app"]["server_tokens"] == 50
    await ledger.aclose()


async def test_an_unsettled_reservation_keeps_counting(open_store):
    ledger = Ledger(BUDGET, open_store(), clock=Clock())
    assert (await ledger.admit("app", HALF)).ok  # never settled
    assert not (await ledger.admit("app", HALF)).ok
    await ledger.aclose()


class GatedStore(MemoryStore):
    """A real memory store whose writes wait for `gate`, and that notes each batch's size."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()
        self.batches: list[int] = []

    async def settle(self, batch):
        self.batches.append(len(batch))
        await self.gate.wait()
        await super().settle(batch)


async def _until(condition) -> None:
    while not condition():
        await asyncio.sleep(0)


async def test_settles_within_their_reservation_are_written_behind_in_batches():
    store = GatedStore()
    ledger = Ledger({"server_tokens_per_day": 10_000}, store)
    admissions = [await ledger.admit("app", Estimate(server_tokens=100)) for _ in range(6)]
    within = Usage(server_prompt_tokens=80)
    await asyncio.wait_for(ledger.settle(admissions[0], within), timeout=5)  # returns although the store is stuck
    await _until(lambda: store.batches)  # the writer took the first at once
    for admission in admissions[1:]:
        await asyncio.wait_for(ledger.settle(admission, within), timeout=5)
    store.gate.set()
    await ledger.flush()
    assert store.batches == [1, 5]  # what queued during the first write went in one transaction
    assert (await ledger.stats())["app"]["requests"] == 6
    await ledger.aclose()


async def test_spend_beyond_the_reservation_is_written_before_settle_returns():
    store = GatedStore()
    ledger = Ledger(BUDGET, store)
    admission = await ledger.admit("app", Estimate(server_tokens=100))
    settling = asyncio.create_task(ledger.settle(admission, Usage(server_prompt_tokens=700)))  # the estimate fell short
    await _until(lambda: store.batches)
    assert not settling.done()
    store.gate.set()
    await settling
    refused = await ledger.admit("app", Estimate(server_tokens=400))  # sees the 700 at once, no flush
    assert not refused.ok and refused.reason.startswith("server_tokens_per_day: 700 of 1000")
    await ledger.aclose()


async def test_a_waiting_settle_that_is_cancelled_is_still_written():
    store = GatedStore()
    ledger = Ledger(BUDGET, store)
    recording = asyncio.create_task(ledger.record("app", Usage(server_prompt_tokens=300)))  # no reservation: waits
    await _until(lambda: store.batches)
    recording.cancel()
    store.gate.set()
    await ledger.flush()
    assert (await ledger.stats())["app"]["server_tokens"] == 300
    await ledger.aclose()


class FailingStore(MemoryStore):
    """A real memory store whose first `failures` writes fail, as a dropped connection would."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures

    async def settle(self, batch):
        if self.failures:
            self.failures -= 1
            raise ConnectionError("store unreachable")
        await super().settle(batch)


async def test_a_failed_write_is_reported_and_retried_once_written():
    ledger = Ledger({}, FailingStore(failures=1))
    await ledger.settle(await ledger.admit("app", HALF), Usage(server_prompt_tokens=10))
    with pytest.raises(ConnectionError, match="store unreachable"):
        await ledger.flush()
    await ledger.flush()  # the writer retried it
    assert (await ledger.stats())["app"] == pytest.approx(
        {"requests": 1, "server_tokens": 10, "client_tokens": 0, "cost_usd": 0.0, "baseline_cost_usd": 0.0,
         "saving_usd": 0.0, "server_tokens_today": 10, "cost_usd_today": 0.0})
    await ledger.aclose()


async def test_a_closed_ledger_refuses_to_settle():
    ledger = Ledger({}, MemoryStore())
    admission = await ledger.admit("app", HALF)
    await ledger.aclose()
    with pytest.raises(RuntimeError, match="closed"):
        await ledger.settle(admission, Usage())
