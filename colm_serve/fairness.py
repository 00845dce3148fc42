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

Start tags alone do not help a client app that sends one request at a time: between its
answer and its next request the flood takes every freed slot, and with calls that end
together (one batch of an upstream's slots) the next free slot can be a whole call away.
So, anticipatory scheduling: when a client below its fair share of slots frees one while
others wait, and has nothing queued itself, the slot is kept for it for `anticipate_s`;
it comes back within that time (its next request) or the slot goes to the queue. The cost
is bounded: at most `anticipate_s` of one slot per call of a client under its share.
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
        anticipate_s: float = 0.0,
    ) -> None:
        self.max_concurrency = max_concurrency
        self.queue_limit = queue_limit
        self.anticipate_s = anticipate_s
        self.in_flight = 0
        self.waiting = 0
        self._keeping: dict[str, asyncio.TimerHandle] = {}  # slots kept for a client coming back
        self._holding: dict[str, int] = {}  # slots held, per client
        self._queued: dict[str, int] = {}  # live waiters, per client
        self._weights: dict[str, float] = {}
        self._clock = clock
        self._on_change = on_change
        self._heap: list[_Waiter] = []
        self._finish: dict[str, float] = {}
        self._vtime = 0.0
        self._seq = itertools.count()
        self._hold_s = 1.0

    @property
    def kept(self) -> int:
        """Slots kept for a client coming back (anticipation)."""
        return len(self._keeping)

    def waiting_by_client(self) -> dict[str, int]:
        return {client: n for client, n in self._queued.items() if n}

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
            self._release(client)

    async def _acquire(self, client: str, weight: float, deadline: Deadline) -> None:
        self._weights[client] = weight
        kept = self._keeping.pop(client, None)
        if kept is not None:  # its slot was kept for it
            kept.cancel()
            self._grant(client, self._tag(client, weight))
            return
        if self.in_flight + self.kept < self.max_concurrency and self.waiting == 0:
            self._grant(client, self._tag(client, weight))
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
        self._queued[client] = self._queued.get(client, 0) + 1
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
            self._release(waiter.client, keep=False)
            return
        waiter.cancelled = True
        self.waiting -= 1
        self._queued[waiter.client] -= 1
        self._changed()

    def _grant(self, client: str, tag: float) -> None:
        self._vtime = tag
        self.in_flight += 1
        self._holding[client] = self._holding.get(client, 0) + 1
        self._changed()

    def _release(self, client: str, *, keep: bool = True) -> None:
        self.in_flight -= 1
        self._holding[client] -= 1
        if keep and self._keeps_for(client):
            self._keeping[client] = asyncio.get_running_loop().call_later(self.anticipate_s, self._give_up_keeping, client)
            self._changed()
            return
        self._dispatch()

    def _keeps_for(self, client: str) -> bool:
        """Whether to keep the freed slot for `client`: others wait, it has nothing queued, and
        it holds less than its weighted share of the slots among the clients with work."""
        if not self.anticipate_s or not self.waiting or self._queued.get(client) or client in self._keeping:
            return False
        busy = {c for c, n in self._holding.items() if n} | {c for c, n in self._queued.items() if n} | {client}
        share = self.max_concurrency * self._weights[client] / sum(self._weights[c] for c in busy)
        return self._holding[client] + 1 <= share

    def _give_up_keeping(self, client: str) -> None:
        if self._keeping.pop(client, None) is not None:
            self._dispatch()

    def _dispatch(self) -> None:
        """Hand free slots to the waiters with the smallest tags."""
        while self._heap and self.in_flight + self.kept < self.max_concurrency:
            waiter = heapq.heappop(self._heap)
            if waiter.cancelled:
                continue
            self.waiting -= 1
            self._queued[waiter.client] -= 1
            self._grant(waiter.client, waiter.tag)
            waiter.future.set_result(None)
        if not self.waiting and self._keeping:  # nobody left to keep the slots from
            for timer in self._keeping.values():
                timer.cancel()
            self._keeping.clear()
        if not self._heap and self.in_flight == 0:
            self._finish.clear()  # idle: old tags carry no history worth keeping
            self._holding.clear()
            self._queued.clear()
            self._weights.clear()
        self._changed()

    def _changed(self) -> None:
        if self._on_change:
            self._on_change()
