"""A request's root span around the service's work, the same for every route that serves a chat."""

from __future__ import annotations

from collections.abc import AsyncIterator, Coroutine
from typing import Any

from colm_serve import telemetry
from colm_serve.api.responses import span_attributes
from colm_serve.outcome import Outcome
from colm_serve.protocol.openai import ChatCompletionRequest


def caller_tags(body: ChatCompletionRequest) -> dict[str, str]:
    """What the client app says of itself (`user`, `safety_identifier`, `metadata`), on the
    request's span, where operators look for it."""
    tags = {f"request.{k}": str(v) for k in ("user", "safety_identifier") if (v := getattr(body, k, None))}
    metadata = getattr(body, "metadata", None)
    if isinstance(metadata, dict):
        tags.update({f"request.metadata.{k}": str(v)[:512] for k, v in list(metadata.items())[:16]})
    return tags


async def traced(span: telemetry.RequestSpan, work: Coroutine[Any, Any, Outcome | AsyncIterator]) -> Outcome | AsyncIterator:
    """The work's result, run under `span`. An Outcome ends the span with how it ended; a
    stream leaves it open for the stream to end; an error ends it with the error."""
    try:
        result = await span.task(work)
    except BaseException as exc:
        span.end(exc)
        raise
    if isinstance(result, Outcome):
        span.set(**span_attributes(result))
        span.end()
    return result
