"""What a chat handler produces: text pieces of the answer, Progress notes about the work, then
one Outcome (the answer, why it ended, its trace).

Shared by the collaboration, the pass-through models and the embedded stand-in server; the API layer
turns the same events into a JSON body or an SSE stream (Progress as `reasoning_content`).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

from colm_serve.protocol.trace import Trace


@dataclass
class Finished:
    """Ends a text stream: the finish reason (the usage is already on the trace)."""

    reason: str | None


@dataclass
class Progress:
    """A piece of the collaboration's visible work: which step, and text to show for it.

    Streams show it folded, as a model's thinking; a non-streamed response drops it.
    """

    step: str
    text: str


@dataclass
class Outcome:
    answer: str
    finish_reason: str | None
    trace: Trace


async def with_outcome(pieces: AsyncIterator, trace: Trace) -> AsyncIterator[str | Progress | Outcome]:
    """Passes text pieces and Progress through and ends with the Outcome the text adds up to."""
    t0, parts, finish = time.time(), [], None
    async for piece in pieces:
        if isinstance(piece, Finished):
            finish = piece.reason
            continue
        if isinstance(piece, str):
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
