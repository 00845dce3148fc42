"""Admission and fairness: a bounded queue served by start-time fair queuing.

Used wherever a request can wait for a shared resource: each ServerProxy in front of its
upstream server, and the client model's engine in front of its batch slots. The Serve limits
of those deployments are derived from these queues (config.AppArgs.serve_limits), so no
first-come queue of Serve's holds a request before a fair queue has seen it.

Each waiting call gets a start tag S = max(V, F[client]) and advances its client's finish
tag F[client] = S + 1/weight; the smallest S goes next and V follows the dispatched tag.
A flooding client's queued calls carry ever larger tags, so a newcomer from another client
starts at V and goes next: the flood only delays itself. At most `max_concurrency` calls
hold a slot at once; beyond `queue_limit` waiters admission refuses with RateLimited.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from colm_serve.deadline import Deadline
from colm_serve.errors import RateLimited

EWMA_ALPHA = 0.2  # smoothing of the slot holding time used for Retry-After estimates


@dataclass(order=True)
class _Waiter:
    tag: float
    seq: int
    client: str = field(compare=False)
    future: asyncio.Future = field(compare=False)
    cancelled: bool = field(default=False, compare=False)


class FairQueue:
    def __init__(
        self,
        *,
        max_concurrency: int,
        queue_limit: int,
        clock: Callable[[], float] = time.monotonic,
        on_change: Callable[[], None] | None = None,
    ) -> None:
        self.max_concurrency = max_concurrency
        self.queue_limit = queue_limit
        self.in_flight = 0
        self.waiting = 0
        self._clock = clock
        self._on_change = on_change
        self._heap: list[_Waiter] = []
        self._finish: dict[str, float] = {}
        self._vtime = 0.0
        self._seq = itertools.count()
        self._hold_s = 1.0

    def waiting_by_client(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for waiter in self._heap:
            if not waiter.cancelled:
                counts[waiter.client] = counts.get(waiter.client, 0) + 1
        return counts

    def retry_after_s(self) -> float:
        """How long until the queue has likely drained enough to admit one more call."""
        return max(1.0, (self.waiting + 1) / self.max_concurrency * self._hold_s)

    @asynccontextmanager
    async def slot(self, client: str, weight: float, deadline: Deadline) -> AsyncIterator[None]:
        await self._acquire(client, weight, deadline)
        started = self._clock()
        try:
            yield
        finally:
            held = self._clock() - started
            self._hold_s += EWMA_ALPHA * (held - self._hold_s)
            self._release()

    async def _acquire(self, client: str, weight: float, deadline: Deadline) -> None:
        if self.in_flight < self.max_concurrency and self.waiting == 0:
            self._vtime = self._tag(client, weight)
            self.in_flight += 1
            self._changed()
            return
        if self.waiting >= self.queue_limit:
            raise RateLimited(
                f"the queue for this server is full ({self.queue_limit} waiting)",
                retry_after_s=self.retry_after_s(),
                code="queue_full",
            )
        waiter = _Waiter(self._tag(client, weight), next(self._seq), client, asyncio.get_running_loop().create_future())
        heapq.heappush(self._heap, waiter)
        self.waiting += 1
        self._changed()
        try:
            await deadline.wait(asyncio.shield(waiter.future), "waiting for an upstream slot")
        except BaseException:
            self._abandon(waiter)
            raise

    def _tag(self, client: str, weight: float) -> float:
        start = max(self._vtime, self._finish.get(client, 0.0))
        self._finish[client] = start + 1.0 / weight
        return start

    def _abandon(self, waiter: _Waiter) -> None:
        if waiter.future.done():  # granted just as we gave up: hand the slot on
            self._release()
            return
        waiter.cancelled = True
        self.waiting -= 1
        self._changed()

    def _release(self) -> None:
        self.in_flight -= 1
        while self._heap:
            waiter = heapq.heappop(self._heap)
            if waiter.cancelled:
                continue
            self.waiting -= 1
            self.in_flight += 1
            self._vtime = waiter.tag
            waiter.future.set_result(None)
            break
        if not self._heap and self.in_flight == 0:
            self._finish.clear()  # idle: old tags carry no history worth keeping
        self._changed()

    def _changed(self) -> None:
        if self._on_change:
            self._on_change()
