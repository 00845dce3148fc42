"""Deadlines: a request's end-to-end limit, on a monotonic clock so wall-clock jumps cannot move it.

Requests carry their deadline across Ray as wall time (`time.time()`); each process turns it
into a `Deadline` once. `within_deadline` bounds a whole event stream by one: upstream calls
carry the deadline and the ServerProxy enforces it, but the client model's generation, or a
port that ignores the deadline, could otherwise hold a request far past it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar

from colm_serve.errors import DeadlineExceeded

T = TypeVar("T")


class Deadline:
    """`at` is on `clock`'s timebase (None: no deadline)."""

    def __init__(self, at: float | None, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.at = at
        self._clock = clock

    @classmethod
    def from_wall(cls, wall: float | None, *, clock: Callable[[], float] = time.monotonic) -> "Deadline":
        if wall is None:
            return cls(None, clock=clock)
        return cls(clock() + (wall - time.time()), clock=clock)

    def remaining(self) -> float | None:
        return None if self.at is None else self.at - self._clock()

    def expired(self) -> bool:
        left = self.remaining()
        return left is not None and left <= 0

    def check(self, what: str) -> None:
        if self.expired():
            raise DeadlineExceeded(f"deadline passed while {what}", code="deadline_exceeded")

    def cap(self, seconds: float) -> float:
        """The shorter of `seconds` and the time left (never negative)."""
        left = self.remaining()
        return max(0.0, seconds if left is None else min(seconds, left))

    async def wait(self, aw: Awaitable[T], what: str) -> T:
        """Await `aw`, giving up with DeadlineExceeded when the deadline passes."""
        left = self.remaining()
        if left is None:
            return await aw
        try:
            return await asyncio.wait_for(aw, max(0.0, left))
        except TimeoutError:
            raise DeadlineExceeded(f"deadline passed while {what}", code="deadline_exceeded") from None


async def within_deadline(events: AsyncIterator[T], deadline: Deadline) -> AsyncIterator[T]:
    """Every event must come before the deadline; a late one ends the stream with a 504 (or an
    error event, once streaming), and cancelling the wait cancels the work behind it."""
    try:
        while True:
            try:
                async with asyncio.timeout(deadline.remaining()):
                    event = await anext(events)
            except StopAsyncIteration:
                return
            except TimeoutError:
                raise DeadlineExceeded("the request did not finish before its deadline", code="deadline_exceeded") from None
            yield event
    finally:
        await events.aclose()
