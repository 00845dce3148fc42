"""Single-flight coalescing and the response cache.

Both key a call by a hash of the canonical JSON of what decides its answer (server, model,
messages, max_tokens, temperature, top_p, seed, stop), never by who asked.
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
KEY_FIELDS = ("server", "model", "messages", "max_tokens", "temperature", "top_p", "seed", "stop")


def call_key(call: UpstreamCall) -> str:
    fields = call.model_dump(include=set(KEY_FIELDS))
    canonical = json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass
class _Flight(Generic[T]):
    task: asyncio.Task
    waiters: int = 0


class SingleFlight(Generic[T]):
    """Concurrent callers with one key share one run of the work.

    The work runs as its own task so one caller's cancellation or deadline does not end it
    for the others; when the last caller leaves, the work is cancelled.
    """

    def __init__(self) -> None:
        self._flights: dict[str, _Flight[T]] = {}

    def __len__(self) -> int:
        return len(self._flights)

    async def run(self, key: str, work: Callable[[], Awaitable[T]], *, deadline: Deadline) -> tuple[T, bool]:
        """Returns the result and whether this caller joined someone else's flight."""
        flight = self._flights.get(key)
        joined = flight is not None
        if flight is None:
            flight = self._start(key, work)
        flight.waiters += 1
        try:
            return await deadline.wait(asyncio.shield(flight.task), "waiting for the upstream"), joined
        finally:
            flight.waiters -= 1
            if flight.waiters == 0 and not flight.task.done():
                flight.task.cancel()

    def _start(self, key: str, work: Callable[[], Awaitable[T]]) -> _Flight[T]:
        flight: _Flight[T] = _Flight(asyncio.ensure_future(work()))
        self._flights[key] = flight

        def _landed(task: asyncio.Task) -> None:
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
        if self.max_entries <= 0 or self.ttl_s <= 0:
            return
        self._entries[key] = (self._clock() + self.ttl_s, reply)
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)
