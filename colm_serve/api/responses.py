"""Outcomes to OpenAI response bodies, SSE streams and response headers."""

from __future__ import annotations

import asyncio
import contextvars
import functools
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import aclosing
from typing import Any, TypeVar

from colm_serve import telemetry
from colm_serve.errors import as_colm_error
from colm_serve.outcome import Chunk, Outcome, Progress
from colm_serve.protocol.openai import (
    ChatCompletionChunk,
    ChatCompletionResponse,
    Choice,
    ChunkChoice,
    DeltaMessage,
    OpenAIUsage,
    ResponseMessage,
)
from colm_serve.protocol.trace import Trace

logger = logging.getLogger("colm_serve.api")
T = TypeVar("T")
KEEPALIVE = ": keep-alive\n\n"  # an SSE comment: clients ignore it, idle timers see bytes


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


def completion(model: str, outcome: Outcome, *, trace: bool | None) -> ChatCompletionResponse | dict[str, Any]:
    """`trace=None` leaves CoLM's field out (the embedded server is a plain OpenAI server). An
    answer that came as a whole body (the pass-through) goes back as it came, under our model id."""
    if outcome.body is not None:
        body = {**outcome.body, "model": model}
        if trace is not None:
            body["colm"] = colm_field(outcome.trace, full=trace)
        return body
    return ChatCompletionResponse(
        model=model,
        choices=[Choice(message=ResponseMessage(content=outcome.answer), finish_reason=outcome.finish_reason or "stop",
                        logprobs=outcome.logprobs)],
        usage=openai_usage(outcome.trace),
        colm=None if trace is None else colm_field(outcome.trace, full=trace),
    )


def completion_json(model: str, outcome: Outcome, *, trace: bool | None) -> str:
    """`completion` as the JSON text of the response body."""
    resp = completion(model, outcome, trace=trace)
    if isinstance(resp, dict):
        return json.dumps(resp, separators=(",", ":"))
    return resp.model_dump_json(exclude_none=True)


async def sse(
    model: str,
    events: AsyncIterator[str | Progress | Outcome],
    *,
    trace: bool | None,
    include_usage: bool,
    progress: bool = True,
    keepalive_s: float = 5.0,
    request: telemetry.RequestSpan | None = None,
) -> AsyncIterator[str]:
    """Standard chat.completion.chunk events; CoLM's field rides on the last chunk before [DONE].

    The role chunk goes out at once. Chunks (a pass-through's own, or the client model's) go on
    as they came under this stream's id and model: they carry their role, finish and usage
    chunks, so none is added, and a usage chunk goes out only when `include_usage` asks; the
    `colm` field then rides on a last chunk with no choices. Progress goes out as `delta.reasoning_content` (the
    vLLM/DeepSeek convention for thinking, which chat UIs fold away), its step named in the
    chunk's `colm.step`; `progress=False` leaves it out for plain clients. While the next
    event is being worked on, an SSE comment every `keepalive_s` keeps proxies and load
    balancers from closing the idle stream. `request` is the request's span: every step runs
    under it, and it ends with the stream.

    An error after the stream has started cannot change the HTTP status any more, so it is
    sent as an OpenAI error event, and the stream still ends with [DONE].
    """
    cid, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())
    run = request.task if request else functools.partial(asyncio.create_task, context=contextvars.copy_context())

    def chunk(delta: DeltaMessage, *, finish_reason: str | None = None, logprobs: dict[str, Any] | None = None,
              **extra: Any) -> str:
        choice = ChunkChoice(delta=delta, finish_reason=finish_reason, logprobs=logprobs)
        body = ChatCompletionChunk(id=cid, created=created, model=model, choices=[choice], **extra)
        return f"data: {body.model_dump_json(exclude_none=True)}\n\n"

    def whole(body: dict[str, Any]) -> str | None:
        if not body.get("choices") and not include_usage and "usage" in body:
            return None
        return f"data: {json.dumps({**body, 'id': cid, 'model': model}, separators=(',', ':'))}\n\n"

    def render(event: str | Progress | Chunk | Outcome | None) -> str | None:
        if event is None:
            return KEEPALIVE
        if isinstance(event, Chunk):
            return whole(event.body)
        if isinstance(event, Outcome):
            if request:
                request.set(**span_attributes(event))
            colm = None if trace is None else colm_field(event.trace, full=trace)
            if event.streamed_whole:
                return None if colm is None else whole({"id": cid, "object": "chat.completion.chunk", "created": created,
                                                        "model": model, "choices": [], "colm": colm})
            # The answer's logprobs ride on its finish chunk: stream readers add up every chunk's.
            return chunk(DeltaMessage(), finish_reason=event.finish_reason or "stop", logprobs=event.logprobs,
                         usage=openai_usage(event.trace) if include_usage else None, colm=colm)
        if isinstance(event, Progress):
            shown = progress and event.text
            step = None if trace is None else {"step": event.step}
            return chunk(DeltaMessage(reasoning_content=event.text), colm=step) if shown else None
        return chunk(DeltaMessage(content=event)) if event else None

    failure: BaseException | None = None
    try:
        if not isinstance(getattr(events, "first", None), Chunk):  # Chunks carry their own role chunk
            yield chunk(DeltaMessage(role="assistant", content=""))
        try:
            async with aclosing(paced(events, keepalive_s=keepalive_s, run=run)) as paced_events:
                async for event in paced_events:
                    if (text := render(event)) is not None:
                        yield text
        except Exception as exc:
            failure = exc
            yield f"data: {json.dumps(as_colm_error(exc).body())}\n\n"
        yield "data: [DONE]\n\n"
    except BaseException as exc:  # the client left: the span says so, and the exception goes on
        failure = exc
        raise
    finally:
        if request:
            request.end(failure)


async def paced(
    events: AsyncIterator[T], *, keepalive_s: float, run: Callable[[Coroutine[Any, Any, Any]], asyncio.Task]
) -> AsyncIterator[T | None]:
    """The events, with a None each time `keepalive_s` passes without one.

    The wait for the next event is one task (started by `run`) that the timer never cancels:
    after a keep-alive the same task is awaited again, so the work behind it goes on
    undisturbed. If the stream ends early, that work is cancelled, or, between events, the
    events are closed, and either is waited for, so nothing outlives the request.
    """
    pending: asyncio.Task | None = None
    finished = False
    try:
        while True:
            if pending is None:
                pending = run(_next(events))
            done, _ = await asyncio.wait({pending}, timeout=keepalive_s)
            if not done:
                yield None
                continue
            task, pending = pending, None
            event = task.result()
            if event is _END:
                finished = True
                return
            yield event
    finally:
        if not finished:
            await _stop(events, pending, run)


_END = object()
_CLOSING: set[asyncio.Task] = set()  # strong references: the loop keeps only weak ones


async def _next(events: AsyncIterator[T]) -> T | object:
    return await anext(events, _END)


async def _close(events: AsyncIterator) -> None:
    await events.aclose()  # type: ignore[attr-defined]


async def _stop(events: AsyncIterator, pending: asyncio.Task | None, run: Callable[..., asyncio.Task]) -> None:
    """Cancels the event in flight, or closes the events between two; waits for it (a task
    of its own, so it finishes even if this wait is cancelled again)."""
    if pending is not None and not pending.done():
        pending.cancel()
        closing = pending
    else:
        if pending is not None:  # an event that arrived after its reader left
            _report_failure(pending)
        closing = run(_close(events))
    _CLOSING.add(closing)
    closing.add_done_callback(_CLOSING.discard)
    closing.add_done_callback(_report_failure)
    await asyncio.wait({closing})


def _report_failure(task: asyncio.Task) -> None:
    if not task.cancelled() and task.exception() is not None:
        logger.error("the work behind an abandoned stream failed", exc_info=task.exception())


def span_attributes(outcome: Outcome) -> dict[str, Any]:
    """What the request's span records of how it ended."""
    usage = outcome.trace.usage
    return {
        "finish_reason": outcome.finish_reason,
        "strategy": outcome.trace.strategy or None,
        "degraded": [reason.split(":")[0] for reason in outcome.trace.degraded] or None,
        "server_tokens": usage.server_tokens,
        "client_tokens": usage.client_tokens,
        "cost_usd": usage.cost_usd,
        "baseline_cost_usd": usage.baseline_cost_usd,
        "saving_usd": usage.saving_usd,
    }


def headers(outcome: Outcome) -> dict[str, str]:
    """X-CoLM-Degraded names every kind of degradation (`client_only, budget`), in order."""
    kinds = dict.fromkeys(reason.split(":")[0] for reason in outcome.trace.degraded)
    return {"X-CoLM-Degraded": ", ".join(kinds)} if kinds else {}
