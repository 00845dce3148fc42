"""A call's deadline, converted once from wall time to the gateway's monotonic clock."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from colm_serve.errors import DeadlineExceeded

T = TypeVar("T")


class Deadline:
    """`at` is on `clock`'s timebase (None: no deadline), so wall-clock jumps cannot move it."""

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
