"""Single-flight coalescing and the response cache.

Both key a call by a hash of the canonical JSON of what decides its answer (server, model,
messages, max_tokens, temperature, top_p, seed, stop, and a pass-through's own parameters),
never by who asked.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from colm_serve.deadline import Deadline
from colm_serve.server_proxy.types import UpstreamCall, UpstreamReply

T = TypeVar("T")
KEY_FIELDS = ("server", "model", "messages", "max_tokens", "temperature", "top_p", "seed", "stop", "params")


def call_key(call: UpstreamCall) -> str:
    fields = call.model_dump(include=set(KEY_FIELDS))
    canonical = json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass
class _Flight(Generic[T]):
    task: asyncio.Task
    waiters: int = 0
    recipients: int = 0  # how many callers were waiting when it landed: they share its bill


@dataclass(frozen=True)
class Landed(Generic[T]):
    """A flight's result as one caller got it: whether it joined someone else's flight, and
    how many callers received the same result (each pays 1/`shared` of it)."""

    result: T
    joined: bool
    shared: int


class SingleFlight(Generic[T]):
    """Concurrent callers with one key share one run of the work.

    The work runs as its own task, with no deadline of its own: each caller waits until its
    own deadline, and the work goes on while anyone still waits. So a caller that leaves
    (its deadline, a disconnect) ends nothing for the others, and a follower with 300 s left
    outlives a leader with 2 s. When the last caller leaves, the work is cancelled.
    """

    def __init__(self) -> None:
        self._flights: dict[str, _Flight[T]] = {}

    def __len__(self) -> int:
        return len(self._flights)

    async def run(self, key: str, work: Callable[[], Awaitable[T]], *, deadline: Deadline) -> Landed[T]:
        flight = self._flights.get(key)
        joined = flight is not None
        if flight is None:
            flight = self._start(key, work)
        flight.waiters += 1
        try:
            result = await deadline.wait(asyncio.shield(flight.task), "waiting for the upstream")
            return Landed(result, joined, max(1, flight.recipients))
        finally:
            flight.waiters -= 1
            if flight.waiters == 0 and not flight.task.done():
                flight.task.cancel()

    def _start(self, key: str, work: Callable[[], Awaitable[T]]) -> _Flight[T]:
        flight: _Flight[T] = _Flight(asyncio.ensure_future(work()))
        self._flights[key] = flight

        def _landed(task: asyncio.Task) -> None:
            # Runs before any waiter resumes: the callers still waiting now are the recipients.
            flight.recipients = flight.waiters
            if self._flights.get(key) is flight:
                del self._flights[key]
            if not task.cancelled():
                task.exception()  # retrieved here so a flight nobody awaits any more logs no warning

        flight.task.add_done_callback(_landed)
        return flight


class ResponseCache:
    """LRU with a time to live; holds replies of deterministic calls only (the caller decides)."""

    def __init__(self, *, ttl_s: float, max_entries: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._clock = clock
        self._entries: OrderedDict[str, tuple[float, UpstreamReply]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def enabled(self) -> bool:
        return self.max_entries > 0 and self.ttl_s > 0

    def get(self, key: str) -> UpstreamReply | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        expires, reply = entry
        if self._clock() >= expires:
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return reply

    def put(self, key: str, reply: UpstreamReply) -> None:
        if not self.enabled:
            return
        self._entries[key] = (self._clock() + self.ttl_s, reply)
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)
