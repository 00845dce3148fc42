"""The request's deadline over its whole event stream.

Upstream calls carry the deadline and the ServerProxy enforces it, but nothing else would:
the client model's generation, or a port that ignores the deadline, could hold a request
far past it. This bounds the wait for every event, so a late request ends in a 504 (or an
error event, once streaming), and cancelling the wait cancels the work behind it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import TypeVar

from colm_serve.errors import DeadlineExceeded
from colm_serve.router.ports import RequestContext

T = TypeVar("T")


async def within_deadline(events: AsyncIterator[T], ctx: RequestContext) -> AsyncIterator[T]:
    try:
        while True:
            try:
                async with asyncio.timeout(ctx.remaining()):
                    event = await anext(events)
            except StopAsyncIteration:
                return
            except TimeoutError:
                raise DeadlineExceeded("the request did not finish before its deadline", code="deadline_exceeded") from None
            yield event
    finally:
        await events.aclose()
