"""What a chat handler produces: text pieces of the answer, Progress notes about the work, then
one Outcome (the answer, why it ended, its trace).

Shared by the collaboration, the pass-through models and the embedded stand-in server; the API layer
turns the same events into a JSON body or an SSE stream (Progress as `reasoning_content`).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

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
class Chunk:
    """One `chat.completion.chunk` as its writer made it (an upstream server, or the client
    model's OpenAI layer): the API sends it on with only `id` and `model` replaced, so tool-call
    deltas, logprobs, refusals and usage reach the client app intact."""

    body: dict[str, Any]


@dataclass
class Completion:
    """A whole `chat.completion` body as its writer made it; the non-streamed form of Chunk."""

    body: dict[str, Any]


@dataclass
class Outcome:
    answer: str
    finish_reason: str | None
    trace: Trace
    body: dict[str, Any] | None = None  # the Completion, when the answer came as one
    streamed_whole: bool = False  # Chunks carried the answer: the API adds no finish chunk of its own
    logprobs: dict[str, Any] | None = None  # OpenAI's choice `logprobs`, of the tokens the client model wrote


async def with_outcome(pieces: AsyncIterator, trace: Trace) -> AsyncIterator[str | Progress | Chunk | Outcome]:
    """Passes text pieces, Chunks and Progress through and ends with the Outcome they add up to."""
    t0, parts, finish, body, chunked = time.time(), [], None, None, False
    async for piece in pieces:
        if isinstance(piece, Finished):
            finish = piece.reason
            continue
        if isinstance(piece, Completion):
            body = piece.body
            parts.append(first_choice(body).get("message", {}).get("content") or "")
            finish = first_choice(body).get("finish_reason")
            continue
        if isinstance(piece, Chunk):
            chunked = True
            choice = first_choice(piece.body)
            parts.append((choice.get("delta") or {}).get("content") or "")
            finish = choice.get("finish_reason") or finish
        elif isinstance(piece, str):
            parts.append(piece)
        yield piece
    trace.add_latency("total", time.time() - t0)
    yield Outcome(answer="".join(parts), finish_reason=finish, trace=trace, body=body, streamed_whole=chunked)


def first_choice(body: dict[str, Any]) -> dict[str, Any]:
    """The body's choice of index 0 ({} when it has none, e.g. a usage-only chunk)."""
    for choice in body.get("choices") or ():
        if isinstance(choice, dict) and choice.get("index", 0) == 0:
            return choice
    return {}


class Primed:
    """Events whose first one has already arrived: `first` tells what the stream begins with."""

    def __init__(self, first: Any, events: AsyncIterator) -> None:
        self.first, self._events, self._sent = first, events, False

    def __aiter__(self) -> "Primed":
        return self

    async def __anext__(self) -> Any:
        if not self._sent:
            self._sent = True
            return self.first
        return await self._events.__anext__()

    async def aclose(self) -> None:
        await self._events.aclose()


async def primed(events: AsyncIterator) -> Primed:
    """Run up to the first event now, so errors before any output still get their HTTP status."""
    return Primed(await events.__anext__(), events)
