"""Write-behind for settlements: a request's end is queued, not awaited, and one background
task writes the queue in batches, one store transaction per batch.

The writer starts a write as soon as something is queued and batches whatever accumulated
while the previous write ran, so under load many requests share one round trip, and a
crash loses at most the batch in hand (its reservations then keep counting: conservative).
A failed write is logged, kept at the head of the queue and retried with backoff; whoever
waits for it (`flush`, a synchronous settle) gets the error.
"""

from __future__ import annotations

import asyncio
import logging

from colm_serve.accounting.stores.base import BudgetStore, Settlement

logger = logging.getLogger("colm_serve.accounting")

RETRY_MIN_S = 0.1
RETRY_MAX_S = 5.0


class SettleWriter:
    def __init__(self, store: BudgetStore) -> None:
        self._store = store
        self._pending: list[Settlement] = []
        self._pending_done: asyncio.Future[None] | None = None  # resolves when the queued batch is written
        self._in_flight_done: asyncio.Future[None] | None = None
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    def submit(self, item: Settlement) -> asyncio.Future[None]:
        """Queue `item` (no await: a cancelled request still gets its settle queued); the
        future resolves when the batch holding it is written. Await it through `shield`."""
        if self._closed:
            raise RuntimeError("the ledger is closed; settle before aclose()")
        self._ensure_running()
        self._pending.append(item)
        if self._pending_done is None:
            self._pending_done = asyncio.get_running_loop().create_future()
        self._wake.set()
        return self._pending_done

    async def flush(self) -> None:
        """Wait until everything queued before this call is written; raise if a write failed."""
        for done in (self._in_flight_done, self._pending_done):
            if done is not None:
                await asyncio.shield(done)

    async def aclose(self) -> None:
        """Refuse new settlements, write the queue, then stop the background task."""
        self._closed = True
        try:
            await self.flush()
        finally:
            if self._pending:
                logger.error("ledger closed with %d settlements unwritten", len(self._pending))
            if self._task is not None:
                self._task.cancel()
                await asyncio.gather(self._task, return_exceptions=True)

    def _ensure_running(self) -> None:
        if self._task is not None and not self._task.done():
            return
        if self._task is not None and not self._task.cancelled():
            self._task.result()  # the writer loops until cancelled: ending otherwise is a bug, raise it
        self._task = asyncio.get_running_loop().create_task(self._run(), name="colm-ledger-writer")

    async def _run(self) -> None:
        delay = RETRY_MIN_S
        while True:
            await self._wake.wait()
            self._wake.clear()
            if not self._pending:
                continue
            batch, done = self._pending, self._pending_done
            assert done is not None
            self._pending, self._pending_done, self._in_flight_done = [], None, done
            try:
                await self._store.settle(batch)
            except asyncio.CancelledError:
                done.cancel()
                raise
            except Exception as exc:
                if asyncio.current_task().cancelling():  # a client library turned our cancellation into its error
                    done.cancel()
                    raise asyncio.CancelledError from exc
                self._in_flight_done = None
                logger.exception("ledger: writing %d settlements failed; retrying in %.1fs", len(batch), delay)
                self._requeue(batch)
                done.set_exception(exc)
                done.exception()  # logged above; a batch nobody waits for is not "never retrieved"
                await asyncio.sleep(delay)  # backoff before the retry, not a rate limit
                delay = min(2 * delay, RETRY_MAX_S)
                self._wake.set()
                continue
            self._in_flight_done = None
            done.set_result(None)
            delay = RETRY_MIN_S

    def _requeue(self, batch: list[Settlement]) -> None:
        self._pending[:0] = batch
        if self._pending_done is None:
            self._pending_done = asyncio.get_running_loop().create_future()
