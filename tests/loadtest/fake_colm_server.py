"""A small stand-in for the CoLM router's HTTP API, for load-test tests.

It validates every request with the real protocol model (so the load test must send what
the contract accepts), answers in the contract's shape with the `colm` usage object,
streams SSE chunks, and keeps /v1/colm/stats counters that react to `colm.cache`. A streamed
`colm` answer shows its steps first, as the router does: `delta.reasoning_content` chunks
naming their step in `colm.step` (unless `colm.progress` is false), a pause of
`progress_pause_s`, then the answer.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections import Counter
from typing import Any, AsyncIterator

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import ValidationError

from colm_serve.protocol.openai import (
    ChatCompletionChunk,
    ChatCompletionRequest,
    ChatCompletionResponse,
    Choice,
    ChunkChoice,
    DeltaMessage,
    OpenAIUsage,
    ResponseMessage,
)
from colm_serve.protocol.usage import Usage

MODELS = ("colm", "colm-client", "server/qwen-math", "server/gpt-conv", "server/qwen-coder", "server/ds-creative")
RATE_LIMITED_KEY = "sk-rate-limited"  # this key always gets a 429
PLAIN_MODEL = "plain-openai"  # answers like a plain OpenAI server: no `colm` object
ANSWER_WORDS = "Here is a short answer from the fake CoLM server .".split()
DELAY_S = {"colm": 0.3, "colm-client": 0.1}
SERVER_DELAY_S = 0.15
PROGRESS = [
    ("plan", "Strategy guide: asking qwen-coder and gpt-conv (the question is about code).\n"),
    ("guidance:qwen-coder", "Use slicing: items[::-1] makes a reversed copy.\n"),
    ("guidance:gpt-conv", "Mention list.reverse(), which reverses in place.\n"),
    ("summary", "Three ways: slicing, reversed() and list.reverse().\n"),
]
BASELINE_COMPLETION_TOKENS = 80  # the server alone would write the whole answer


def _error(status: int, message: str, kind: str, headers: dict[str, str] | None = None) -> JSONResponse:
    body = {"error": {"message": message, "type": kind, "param": None, "code": None}}
    return JSONResponse(body, status_code=status, headers=headers)


class FakeColm:
    """State of one fake server: counters, the answer cache and who gets refused."""

    def __init__(self, *, rate_limited_keys: frozenset[str] = frozenset(), progress_pause_s: float = 0.0) -> None:
        self.rate_limited_keys = rate_limited_keys
        self.progress_pause_s = progress_pause_s
        self.seen: set[str] = set()
        self.totals: Counter[str] = Counter()
        self.requests: list[dict[str, Any]] = []
        self.in_flight = 0

    def usage_for(self, req: ChatCompletionRequest) -> Usage:
        """colm: 3 upstream calls; colm-client: none; server/x: one. A cache hit costs nothing."""
        prompt = sum(len(m.text().split()) for m in req.messages)
        completion = min(req.output_limit() or 16, len(ANSWER_WORDS))
        calls = {"colm": 3, "colm-client": 0}.get(req.model, 1)
        cache_ok = req.options().cache
        key = json.dumps([req.model, [m.text() for m in req.messages]])
        hit = cache_ok and key in self.seen and calls > 0
        self.seen.add(key)
        self.totals["cache_hits"] += calls if hit else 0
        self.totals["upstream_calls"] += 0 if hit else calls
        server_in, server_out = (0, 0) if hit else (prompt * calls, 20 * calls)
        client = req.model in ("colm", "colm-client")
        usage = Usage(server_prompt_tokens=server_in, server_completion_tokens=server_out,
                      client_prompt_tokens=prompt if client else 0, client_completion_tokens=completion if client else 0,
                      cost_usd=(server_in * 2.5 + server_out * 10.0) / 1e6)
        if req.model == "colm":
            baseline = round((prompt * 2.5 + BASELINE_COMPLETION_TOKENS * 10.0) / 1e6, 10)
            usage = usage.model_copy(update={"baseline_cost_usd": baseline, "saving_usd": round(baseline - usage.cost_usd, 10),
                                             "baseline_estimated": True})  # as the app's, unless it asked the server
        self.totals["server_tokens"] += usage.server_tokens
        self.totals["cost_usd_x1e9"] += round(usage.cost_usd * 1e9)
        return usage

    def stats(self) -> dict[str, Any]:
        t = self.totals
        server = {"upstream_calls": t["upstream_calls"], "coalesced": 0, "cache_hits": t["cache_hits"], "retries": 0,
                  "server_tokens": t["server_tokens"], "cost_usd": t["cost_usd_x1e9"] / 1e9, "queue_depth": 0,
                  "in_flight": self.in_flight, "max_concurrency": 8, "breaker": "closed"}
        totals = {k: server[k] for k in ("upstream_calls", "coalesced", "cache_hits", "retries", "server_tokens", "cost_usd")}
        return {"servers": {"local": server}, "keys": {}, "totals": totals}


def build_app(state: FakeColm) -> FastAPI:
    app = FastAPI()

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": m, "object": "model"} for m in MODELS]}

    @app.get("/v1/colm/stats")
    async def stats() -> dict[str, Any]:
        return state.stats()

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        key = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
        if key in state.rate_limited_keys:
            return _error(429, "too many requests for this key", "rate_limit_exceeded", {"Retry-After": "1"})
        raw = await request.json()
        try:
            req = ChatCompletionRequest.model_validate(raw)
        except ValidationError as e:
            return _error(400, str(e), "invalid_request_error")
        if req.model not in MODELS + (PLAIN_MODEL,):
            return _error(404, f"unknown model {req.model!r}; available: {list(MODELS)}", "not_found_error")
        state.requests.append({"key": key, **raw})  # exactly what the client sent
        return await _answer(state, req)

    return app


async def _answer(state: FakeColm, req: ChatCompletionRequest):
    state.in_flight += 1
    try:
        await asyncio.sleep(DELAY_S.get(req.model, SERVER_DELAY_S))
    finally:
        state.in_flight -= 1
    usage = state.usage_for(req)
    words = ANSWER_WORDS[: min(req.output_limit() or 16, len(ANSWER_WORDS))]
    colm = None if req.model == PLAIN_MODEL else {"usage": usage.model_dump()}
    openai_usage = OpenAIUsage(prompt_tokens=usage.client_prompt_tokens or usage.server_prompt_tokens,
                               completion_tokens=len(words), total_tokens=0)
    if not req.stream:
        body = ChatCompletionResponse(model=req.model, choices=[Choice(message=ResponseMessage(content=" ".join(words)))],
                                      usage=openai_usage, colm=colm)
        return JSONResponse(body.model_dump(exclude_none=True))
    include_usage = bool(req.stream_options and req.stream_options.include_usage)
    steps = PROGRESS if req.model == "colm" and req.options().progress else []
    chunks = _chunks(req.model, words, colm=colm, usage=openai_usage if include_usage else None, progress=steps,
                     pause_s=state.progress_pause_s if steps else 0.0)
    return StreamingResponse(chunks, media_type="text/event-stream")


async def _chunks(model: str, words: list[str], *, colm: dict[str, Any] | None, usage: OpenAIUsage | None,
                  progress: list[tuple[str, str]], pause_s: float) -> AsyncIterator[str]:
    base = {"id": f"chatcmpl-{uuid.uuid4().hex}", "created": int(time.time()), "model": model}
    first = ChatCompletionChunk(**base, choices=[ChunkChoice(delta=DeltaMessage(role="assistant", content=""))])
    yield f"data: {first.model_dump_json(exclude_none=True)}\n\n"
    for step, text in progress:
        await asyncio.sleep(0.01)
        note = ChatCompletionChunk(**base, choices=[ChunkChoice(delta=DeltaMessage(reasoning_content=text))],
                                   colm={"step": step})
        yield f"data: {note.model_dump_json(exclude_none=True)}\n\n"
    await asyncio.sleep(pause_s)
    for i, word in enumerate(words):
        await asyncio.sleep(0.01)
        piece = ChatCompletionChunk(**base, choices=[ChunkChoice(delta=DeltaMessage(content=(" " if i else "") + word))])
        yield f"data: {piece.model_dump_json(exclude_none=True)}\n\n"
    last = ChatCompletionChunk(**base, choices=[ChunkChoice(delta=DeltaMessage(), finish_reason="stop")],
                               usage=usage, colm=colm)
    yield f"data: {last.model_dump_json(exclude_none=True)}\n\n"
    yield "data: [DONE]\n\n"
