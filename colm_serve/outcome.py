"""What a chat handler produces: text pieces, then one Outcome (the answer, why it ended, its trace).

Shared by the collaboration, the baselines and the embedded stand-in server; the API layer
turns the same events into a JSON body or an SSE stream.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

from colm_serve.protocol import Trace


@dataclass
class Finished:
    """Ends a text stream: the finish reason (the usage is already on the trace)."""

    reason: str | None


@dataclass
class Outcome:
    answer: str
    finish_reason: str | None
    trace: Trace


async def with_outcome(pieces: AsyncIterator, trace: Trace) -> AsyncIterator[str | Outcome]:
    """Passes text pieces through and ends with the Outcome they add up to."""
    t0, parts, finish = time.time(), [], None
    async for piece in pieces:
        if isinstance(piece, Finished):
            finish = piece.reason
            continue
        parts.append(piece)
        yield piece
    trace.add_latency("total", time.time() - t0)
    yield Outcome(answer="".join(parts), finish_reason=finish, trace=trace)


async def primed(events: AsyncIterator) -> AsyncIterator:
    """Run up to the first event now, so errors before any output still get their HTTP status."""
    first = await events.__anext__()

    async def rest() -> AsyncIterator:
        yield first
        async for event in events:
            yield event

    return rest()
