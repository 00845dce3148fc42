"""A real OpenAI-compatible HTTP server for tests, with fault injection and measurements.

FastAPI + uvicorn on 127.0.0.1 (ephemeral port) in a background thread with its own event
loop, so clients talk to it over real sockets. It answers /v1/models and
/v1/chat/completions (JSON and SSE, with usage) with text derived from the prompt, and it
measures what it saw: requests, in-flight concurrency (bodies included) and a log.

    with UpstreamSim(latency_s=0.05) as sim:
        sim.set_faults(script=[Fault.error(429, retry_after="1")])
        client = openai.AsyncOpenAI(base_url=sim.url, api_key="x", max_retries=0)
        ...
        assert sim.stats.requests == 2
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import random
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse

VOCABULARY = (
    "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron pi rho sigma tau "
    "upsilon phi chi psi omega"
).split()
NATURAL_WORDS = 12  # replies stop by themselves at this length ("stop"), else at max_tokens ("length")
CHAT_PATH = "/v1/chat/completions"


class InjectedDrop(Exception):
    """Raised inside a response body so uvicorn closes the socket mid-response."""


def _not_injected(record: logging.LogRecord) -> bool:
    """Keep uvicorn from logging a traceback for every drop we inject on purpose."""
    return not (record.exc_info and isinstance(record.exc_info[1], InjectedDrop))


@dataclass(frozen=True)
class Fault:
    kind: Literal["status", "hang", "drop"]
    status: int = 500
    retry_after: str | None = None
    message: str = "injected fault"
    after_chunks: int = 1  # drop: body pieces sent before the socket closes
    hang_s: float = 60.0  # hang: the longest it holds a request whose client stays

    @classmethod
    def error(cls, status: int, *, retry_after: str | None = None, message: str = "injected fault") -> "Fault":
        return cls("status", status=status, retry_after=retry_after, message=message)

    @classmethod
    def hang(cls, *, hang_s: float = 60.0) -> "Fault":
        return cls("hang", hang_s=hang_s)

    @classmethod
    def drop(cls, *, after_chunks: int = 1) -> "Fault":
        return cls("drop", after_chunks=after_chunks)


@dataclass
class Faults:
    """What the next requests meet: `script` is consumed one fault per request, in order;
    then `by_model` for that model, then `always`, else a normal answer."""

    script: list[Fault] = field(default_factory=list)
    always: Fault | None = None
    by_model: dict[str, Fault] = field(default_factory=dict)
    latency_s: float = 0.0
    jitter_s: float = 0.0
    token_latency_s: float = 0.0

    def next_for(self, model: str) -> Fault | None:
        if self.script:
            return self.script.pop(0)
        return self.by_model.get(model, self.always)


@dataclass(frozen=True)
class RequestRecord:
    started: float
    model: str
    stream: bool
    prompt: str
    fault: str | None
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class SimStats:
    requests: int = 0
    in_flight: int = 0
    max_in_flight: int = 0
    log: list[RequestRecord] = field(default_factory=list)


def reply_words(model: str, prompt: str) -> list[str]:
    """The sim's answer: words picked by a hash of model and prompt, so equal prompts match."""
    digest = hashlib.sha256(f"{model}\n{prompt}".encode()).digest()
    return [VOCABULARY[b % len(VOCABULARY)] for b in digest[:NATURAL_WORDS]]


def _text_of(message: dict[str, Any]) -> str:
    content = message.get("content")
    if isinstance(content, str):
        return content
    return " ".join(p.get("text", "") for p in content or [] if isinstance(p, dict))


def _error(status: int, message: str, *, headers: dict[str, str] | None = None) -> JSONResponse:
    kinds = {400: "invalid_request_error", 401: "authentication_error", 429: "rate_limit_error"}
    kind = kinds.get(status, "server_error")
    body = {"error": {"message": message, "type": kind, "param": None, "code": None}}
    return JSONResponse(body, status_code=status, headers=headers)


class UpstreamSim:
    def __init__(
        self,
        *,
        models: Iterable[str] = ("sim-model",),
        api_key: str | None = None,
        latency_s: float = 0.0,
        jitter_s: float = 0.0,
        seed: int = 0,
        log_level: str = "warning",
    ) -> None:
        self.models = list(models)
        self.api_key = api_key
        self._defaults = Faults(latency_s=latency_s, jitter_s=jitter_s)
        self._faults = replace(self._defaults)
        self._stats = SimStats()
        self._lock = threading.Lock()
        self._rng = random.Random(seed)
        self._log_level = log_level
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    # -- control (from the test's thread) ----------------------------------------------

    @property
    def url(self) -> str:
        """Base URL for OpenAI clients, ending in /v1."""
        return f"http://127.0.0.1:{self.port}/v1"

    def set_faults(self, **changes: Any) -> None:
        """Replace fields of the current Faults (script, always, by_model, latency_s, ...)."""
        with self._lock:
            if "script" in changes:
                changes["script"] = list(changes["script"])
            self._faults = replace(self._faults, **changes)

    def reset(self) -> None:
        """Back to the constructor's latency, no faults, zeroed measurements."""
        with self._lock:
            self._faults = replace(self._defaults, script=[], by_model={})
            self._stats = SimStats(in_flight=self._stats.in_flight)

    @property
    def stats(self) -> SimStats:
        with self._lock:
            return replace(self._stats, log=list(self._stats.log))

    def start(self) -> "UpstreamSim":
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            _Counting(self._app(), self), log_level=self._log_level, lifespan="off", timeout_graceful_shutdown=2
        )
        logging.getLogger("uvicorn.error").addFilter(_not_injected)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [sock]}, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the upstream sim did not start")
            time.sleep(0.01)  # test-thread polling of a background server; no event loop here
        return self

    def stop(self) -> None:
        if self._server and self._thread:
            self._server.should_exit = True
            self._thread.join(timeout=10)

    def __enter__(self) -> "UpstreamSim":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- the server (runs in the sim's thread) -----------------------------------------

    def _enter(self) -> None:
        with self._lock:
            self._stats.in_flight += 1
            self._stats.max_in_flight = max(self._stats.max_in_flight, self._stats.in_flight)

    def _leave(self) -> None:
        with self._lock:
            self._stats.in_flight -= 1

    def _admit(self, body: dict[str, Any], headers: dict[str, str]) -> tuple[Fault | None, float, float]:
        with self._lock:
            faults = self._faults
            fault = faults.next_for(body.get("model", ""))
            delay = faults.latency_s + self._rng.uniform(0, faults.jitter_s)
            prompt = _text_of(body["messages"][-1]) if body.get("messages") else ""
            record = RequestRecord(
                time.monotonic(), body.get("model", ""), bool(body.get("stream")), prompt, fault and fault.kind, body,
                headers,
            )
            self._stats.requests += 1
            self._stats.log.append(record)
            return fault, delay, faults.token_latency_s

    def _app(self) -> FastAPI:
        app = FastAPI()

        @app.get("/v1/models")
        async def models() -> dict[str, Any]:
            return {"object": "list", "data": [{"id": m, "object": "model", "owned_by": "sim"} for m in self.models]}

        @app.post(CHAT_PATH)
        async def chat(request: Request) -> Any:
            if self.api_key and request.headers.get("authorization") != f"Bearer {self.api_key}":
                presented = request.headers.get("authorization", "").removeprefix("Bearer ")
                # Like some real providers, echo the key: proxies must not pass it on.
                return _error(401, f"Incorrect API key provided: {presented}")
            body = await request.json()
            if not body.get("messages") or not isinstance(body.get("max_tokens", 1), int):
                return _error(400, "messages must be a non-empty list")
            fault, delay, token_delay = self._admit(body, dict(request.headers))
            await asyncio.sleep(delay)
            if fault is not None:
                return await _inject(fault, request, body)
            if body.get("stream"):
                return StreamingResponse(_sse(body, token_delay), media_type="text/event-stream")
            return _completion(body)

        return app


class _Counting:
    """ASGI wrapper: counts a chat request in flight until its whole body has gone."""

    def __init__(self, app: FastAPI, sim: UpstreamSim) -> None:
        self.app, self.sim = app, sim

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope.get("path") != CHAT_PATH:
            await self.app(scope, receive, send)
            return
        self.sim._enter()
        try:
            await self.app(scope, receive, send)
        finally:
            self.sim._leave()


def _usage(body: dict[str, Any], words: list[str]) -> dict[str, Any]:
    """Usage as providers report it. A model named `*-cached` reports half its prompt as served
    from a prefix cache the OpenAI way, `deepseek-*` the DeepSeek way."""
    prompt = sum(len(_text_of(m).split()) + 3 for m in body["messages"])
    usage: dict[str, Any] = {"prompt_tokens": prompt, "completion_tokens": len(words), "total_tokens": prompt + len(words)}
    model = body.get("model", "")
    if model.endswith("-cached"):
        usage["prompt_tokens_details"] = {"cached_tokens": prompt // 2}
    elif model.endswith("-reasoning"):  # OpenAI's reasoning models: thinking is billed as completion tokens
        usage["completion_tokens_details"] = {"reasoning_tokens": 5}
        usage["completion_tokens"] += 5
        usage["total_tokens"] += 5
    elif model.startswith("deepseek-"):
        usage["prompt_cache_hit_tokens"] = prompt // 2
    return usage


def _answer(body: dict[str, Any]) -> tuple[list[str], str]:
    words = reply_words(body.get("model", ""), _text_of(body["messages"][-1]))
    limit = body.get("max_tokens") or NATURAL_WORDS
    return (words[:limit], "length") if limit < len(words) else (words, "stop")


FINGERPRINT = "fp_sim"


def _tool_call(body: dict[str, Any]) -> dict[str, Any] | None:
    """A request with tools that may call one gets a call of the first (or the named) tool, as
    OpenAI writes it: `content` null, arguments a JSON string."""
    choice, tools = body.get("tool_choice"), body.get("tools") or []
    if not tools or choice == "none":
        return None
    name = choice["function"]["name"] if isinstance(choice, dict) else tools[0]["function"]["name"]
    arguments = json.dumps({"query": _text_of(body["messages"][-1])[:40], "n": 2})
    return {"id": "call_sim0", "type": "function", "function": {"name": name, "arguments": arguments}}


def _logprobs(body: dict[str, Any], words: list[str]) -> dict[str, Any] | None:
    if not body.get("logprobs"):
        return None
    top = body.get("top_logprobs") or 0
    return {"content": [{"token": w, "logprob": -0.5, "bytes": list(w.encode()),
                         "top_logprobs": [{"token": w, "logprob": -0.5, "bytes": list(w.encode())}] * top}
                        for w in words], "refusal": None}


def _completion(body: dict[str, Any]) -> dict[str, Any]:
    words, finish = _answer(body)
    call = _tool_call(body)
    message = {"role": "assistant", "content": None if call else " ".join(words), "refusal": None}
    if call:
        message["tool_calls"], finish = [call], "tool_calls"
    choices = [{"index": i, "message": message, "finish_reason": finish, "logprobs": _logprobs(body, words)}
               for i in range(body.get("n") or 1)]
    return {
        "id": "chatcmpl-sim",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body.get("model", ""),
        "choices": choices,
        "usage": _usage(body, words),
        "system_fingerprint": FINGERPRINT,
    }


def _chunk(body: dict[str, Any], delta: dict[str, Any], finish: str | None = None, **extra: Any) -> str:
    choice = {"index": 0, "delta": delta, "finish_reason": finish, **extra}
    return _event({"id": "chatcmpl-sim", "object": "chat.completion.chunk", "created": int(time.time()),
                   "model": body.get("model", ""), "choices": [choice], "system_fingerprint": FINGERPRINT})


def _tool_chunks(body: dict[str, Any], call: dict[str, Any]) -> list[str]:
    """A tool call streamed as OpenAI streams one: id and name first, then the arguments in pieces."""
    head = {"index": 0, "id": call["id"], "type": "function", "function": {"name": call["function"]["name"], "arguments": ""}}
    args = call["function"]["arguments"]
    pieces = [args[i:i + 7] for i in range(0, len(args), 7)]
    return [_chunk(body, {"role": "assistant", "content": None, "tool_calls": [head]})] + [
        _chunk(body, {"tool_calls": [{"index": 0, "function": {"arguments": p}}]}) for p in pieces
    ] + [_chunk(body, {}, "tool_calls")]


def _event(data: dict[str, Any]) -> str:
    return f"data: {json.dumps(data)}\n\n"


async def _sse(body: dict[str, Any], token_delay: float, *, drop_after: int | None = None) -> AsyncIterator[str]:
    words, finish = _answer(body)
    if (call := _tool_call(body)) is not None:
        pieces = _tool_chunks(body, call)
    else:
        pieces = [_chunk(body, {"role": "assistant", "content": ""})]
        pieces += [_chunk(body, {"content": (" " if i else "") + w}, logprobs=_logprobs(body, [w]))
                   for i, w in enumerate(words)]
        pieces.append(_chunk(body, {}, finish))
    if (body.get("stream_options") or {}).get("include_usage"):
        pieces.append(_event({"id": "chatcmpl-sim", "object": "chat.completion.chunk", "created": int(time.time()),
                              "model": body.get("model", ""), "choices": [], "usage": _usage(body, words)}))
    pieces.append("data: [DONE]\n\n")
    for i, piece in enumerate(pieces):
        if drop_after is not None and i >= drop_after:
            raise InjectedDrop("injected: connection dropped mid-stream")
        yield piece
        await asyncio.sleep(token_delay)


async def _partial_json(body: dict[str, Any], after: int) -> AsyncIterator[str]:
    text = json.dumps(_completion(body))
    yield text[: max(1, min(after * 16, len(text) - 1))]
    raise InjectedDrop("injected: connection dropped mid-response")


async def _inject(fault: Fault, request: Request, body: dict[str, Any]) -> Any:
    if fault.kind == "status":
        headers = {"Retry-After": fault.retry_after} if fault.retry_after else None
        return _error(fault.status, fault.message, headers=headers)
    if fault.kind == "hang":
        until = time.monotonic() + fault.hang_s
        while time.monotonic() < until and not await request.is_disconnected():
            await asyncio.sleep(0.05)  # polls the client: it is the one expected to give up
        return _error(504, "the sim hung and its client stayed")
    if body.get("stream"):
        return StreamingResponse(_sse(body, 0.0, drop_after=fault.after_chunks), media_type="text/event-stream")
    return StreamingResponse(_partial_json(body, fault.after_chunks), media_type="application/json")
