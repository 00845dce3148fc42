"""Pass-through streaming: turn SDK chunks into UpstreamDeltas and count what was spent."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import openai

from colm_serve.deadline import Deadline
from colm_serve.errors import UpstreamError
from colm_serve.server_proxy.breaker import CircuitBreaker
from colm_serve.server_proxy.limits import message_tokens
from colm_serve.server_proxy.types import (
    UpstreamCall,
    UpstreamDelta,
    cached_prompt_tokens,
)

logger = logging.getLogger("colm_serve.server_proxy")


@dataclass
class OpenStream:
    """A stream whose first chunk has arrived (so retries are over)."""

    stream: Any  # openai.AsyncStream[ChatCompletionChunk]
    chunks: AsyncIterator[Any]
    first: Any | None


@dataclass
class StreamTally:
    whole: bool = False  # the pass-through: every chunk goes on as it came
    prompt_tokens: int = 0
    cached_prompt_tokens: int = 0
    completion_tokens: int = 0
    pieces: int = 0
    finish_reason: str | None = None
    reported: bool = False
    opened: bool = False  # the upstream accepted the request and began to stream

    def take(self, chunk: Any) -> UpstreamDelta | None:
        if chunk.usage is not None:
            self.prompt_tokens = chunk.usage.prompt_tokens
            self.cached_prompt_tokens = cached_prompt_tokens(chunk.usage)
            self.completion_tokens = chunk.usage.completion_tokens
            self.reported = True
        choice = next((c for c in chunk.choices or () if c.index == 0), None)
        text = choice.delta.content if choice is not None and choice.delta else None
        if choice is not None:
            self.finish_reason = choice.finish_reason or self.finish_reason
            self.pieces += bool(text)
        if self.whole:
            return UpstreamDelta(text=text or "", chunk=chunk.model_dump(mode="json", exclude_unset=True))
        return UpstreamDelta(text=text) if text else None

    def settle(self, call: UpstreamCall) -> None:
        """Servers that send no usage get an estimate, so cost and budgets still move."""
        if not self.reported:
            logger.warning("upstream %s sent no usage in its stream; estimating tokens", call.server)
            self.prompt_tokens = message_tokens(call.messages)
            self.completion_tokens = self.pieces


async def relay(
    opened: OpenStream, *, tally: StreamTally, deadline: Deadline, breaker: CircuitBreaker
) -> AsyncIterator[UpstreamDelta]:
    """Yield the text pieces; the stream is closed however the consumer leaves."""
    try:
        chunk = opened.first
        while chunk is not None:
            delta = tally.take(chunk)
            if delta is not None:
                yield delta
            chunk = await deadline.wait(anext(opened.chunks, None), "streaming from the upstream")
    except openai.APIError as exc:
        breaker.failure("stream broken")
        raise UpstreamError(
            f"the upstream stream broke after it began ({type(exc).__name__})", code="upstream_stream_broken"
        ) from None
    finally:
        await opened.stream.close()
