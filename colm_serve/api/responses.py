"""Outcomes to OpenAI response bodies, SSE streams and response headers."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from colm_serve.errors import as_colm_error
from colm_serve.outcome import Outcome
from colm_serve.protocol import (
    ChatCompletionChunk,
    ChatCompletionResponse,
    Choice,
    ChunkChoice,
    DeltaMessage,
    OpenAIUsage,
    ResponseMessage,
    Trace,
)


def openai_usage(trace: Trace) -> OpenAIUsage:
    """Every token the request consumed, servers' and client model's alike."""
    u = trace.usage
    prompt = u.server_prompt_tokens + u.client_prompt_tokens
    completion = u.server_completion_tokens + u.client_completion_tokens
    return OpenAIUsage(prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion)


def colm_field(trace: Trace, *, full: bool) -> dict[str, Any]:
    if full:
        return trace.model_dump(mode="json")
    return {"usage": trace.usage.model_dump(mode="json"), "degraded": trace.degraded}


def completion(model: str, outcome: Outcome, *, trace: bool | None) -> ChatCompletionResponse:
    """`trace=None` leaves CoLM's field out (the embedded server is a plain OpenAI server)."""
    return ChatCompletionResponse(
        model=model,
        choices=[Choice(message=ResponseMessage(content=outcome.answer), finish_reason=outcome.finish_reason or "stop")],
        usage=openai_usage(outcome.trace),
        colm=None if trace is None else colm_field(outcome.trace, full=trace),
    )


async def sse(model: str, events: AsyncIterator[str | Outcome], *, trace: bool | None, include_usage: bool) -> AsyncIterator[str]:
    """Standard chat.completion.chunk events; CoLM's field rides on the last chunk before [DONE].

    An error after the stream has started cannot change the HTTP status any more, so it is
    sent as an OpenAI error event, and the stream still ends with [DONE].
    """
    cid, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())

    def chunk(delta: DeltaMessage, **kw: Any) -> str:
        body = ChatCompletionChunk(id=cid, created=created, model=model, choices=[ChunkChoice(delta=delta, **kw)])
        return f"data: {body.model_dump_json(exclude_none=True)}\n\n"

    yield chunk(DeltaMessage(role="assistant", content=""))
    try:
        async for event in events:
            if isinstance(event, Outcome):
                last = ChatCompletionChunk(
                    id=cid,
                    created=created,
                    model=model,
                    choices=[ChunkChoice(delta=DeltaMessage(), finish_reason=event.finish_reason or "stop")],
                    usage=openai_usage(event.trace) if include_usage else None,
                    colm=None if trace is None else colm_field(event.trace, full=trace),
                )
                yield f"data: {last.model_dump_json(exclude_none=True)}\n\n"
            elif event:
                yield chunk(DeltaMessage(content=event))
    except Exception as exc:
        yield f"data: {json.dumps(as_colm_error(exc).body())}\n\n"
    yield "data: [DONE]\n\n"


def headers(outcome: Outcome) -> dict[str, str]:
    """X-CoLM-Degraded names every kind of degradation (`client_only, budget`), in order."""
    kinds = dict.fromkeys(reason.split(":")[0] for reason in outcome.trace.degraded)
    return {"X-CoLM-Degraded": ", ".join(kinds)} if kinds else {}
