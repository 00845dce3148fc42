"""In-process fakes for the pipeline's ports (the fast test tier)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable

from colm_serve.client_model.types import (
    Generation,
    GenerationDelta,
    GenerationRequest,
    Sample,
    TokenLogprob,
    TopLogprob,
)
from colm_serve.config import AppArgs
from colm_serve.errors import UpstreamError
from colm_serve.server_proxy.types import UpstreamCall, UpstreamDelta, UpstreamReply


class FakeClient:
    """Answers with a scripted sequence (or an echo), recording every request. Asked for
    log-probabilities, it reports `token_logprobs`, or else `mean_logprob` for every token.
    Like vLLM it writes `n` answers (one scripted answer each), reports every word as a token
    with alternatives when `top_logprobs` is asked, and under a JSON schema with no scripted
    answer left writes the schema's smallest instance."""

    def __init__(self, answers: list[str] | None = None, *, mean_logprob: float | None = -0.5,
                 token_logprobs: list[float] | None = None) -> None:
        self.answers = list(answers or [])
        self.mean_logprob = mean_logprob
        self.token_logprobs = token_logprobs
        self.requests: list[GenerationRequest] = []

    def _next(self, req: GenerationRequest) -> str:
        self.requests.append(req)
        return self._text(req)

    def _text(self, req: GenerationRequest) -> str:
        if self.answers:
            return self.answers.pop(0)
        if req.structured and isinstance(req.structured.get("json"), dict):
            return json.dumps(instance(req.structured["json"]))
        return f"answer to: {req.messages[-1]['content'][:40]}"

    def _texts(self, req: GenerationRequest) -> list[str]:
        first = self._next(req)
        return [first] + [self._text(req) for _ in range(req.n - 1)]

    def _token_logprobs(self, tokens: int) -> list[float] | None:
        if self.token_logprobs is not None or self.mean_logprob is None:
            return self.token_logprobs
        return [self.mean_logprob] * tokens

    def _entries(self, pieces: list[str], top: int) -> list[TokenLogprob]:
        """Each piece as a token; its alternatives are itself, then alt1, alt2, ... (`top` in all)."""
        logprob = -0.5 if self.mean_logprob is None else self.mean_logprob
        entries = []
        for piece in pieces:
            ranked = [piece] + [f"alt{k}" for k in range(1, top)]
            entries.append(TokenLogprob(token=piece, logprob=logprob, bytes=list(piece.encode()), top_logprobs=[
                TopLogprob(token=t, logprob=logprob - k, bytes=list(t.encode())) for k, t in enumerate(ranked[:top])]))
        return entries

    async def generate(self, req: GenerationRequest) -> Generation:
        texts = self._texts(req)
        counts = [len(t.split()) for t in texts]
        samples = [Sample(index=i, text=t, completion_tokens=c, finish_reason="stop",
                          logprobs=self._entries(_words(t), req.top_logprobs) if req.top_logprobs is not None else None)
                   for i, (t, c) in enumerate(zip(texts, counts))]
        return Generation(text=texts[0], prompt_tokens=50, completion_tokens=sum(counts), finish_reason="stop",
                          mean_logprob=self.mean_logprob if req.logprobs else None,
                          token_logprobs=self._token_logprobs(counts[0]) if req.logprobs else None,
                          samples=samples if req.n > 1 or req.top_logprobs is not None else [])

    async def stream(self, req: GenerationRequest) -> AsyncIterator[GenerationDelta]:
        answers = [_words(t) for t in self._texts(req)]
        for position in range(max(len(words) for words in answers)):
            for index, words in enumerate(answers):
                if position >= len(words):
                    continue
                last = position == len(words) - 1
                yield GenerationDelta(
                    index=index,
                    text=words[position],
                    prompt_tokens=50 if last else 0,
                    completion_tokens=len(words) if last else 0,
                    finish_reason="stop" if last else None,
                    mean_logprob=self.mean_logprob if last and req.logprobs else None,
                    token_logprobs=self._token_logprobs(len(words)) if last and req.logprobs else None,
                    logprobs=self._entries([words[position]], req.top_logprobs) if req.top_logprobs is not None else None,
                )


def _words(text: str) -> list[str]:
    """The text as the fake's tokens: each word with the space before it."""
    words = text.split(" ")
    return [w if i == 0 else " " + w for i, w in enumerate(words)]


def instance(schema: dict) -> object:
    """The smallest JSON value that fits `schema` (the subset tool and response schemas use)."""
    if "const" in schema:
        return schema["const"]
    if "enum" in schema:
        return schema["enum"][0]
    for key in ("anyOf", "oneOf"):
        if key in schema:
            return instance(schema[key][0])
    kind = schema.get("type", "object")
    if kind == "object":
        return {k: instance(schema["properties"][k]) for k in schema.get("required", [])}
    if kind == "array":
        return [instance(schema.get("items", {})) for _ in range(schema.get("minItems", 0))]
    return {"string": "x", "integer": 0, "number": 0, "boolean": False, "null": None}[kind]


Behaviour = Callable[[UpstreamCall], str]


class FakeUpstreams:
    """Replies per model/system prompt; `fail` and `delay` are keyed by a word in the system prompt."""

    def __init__(self, *, reply: Behaviour | None = None, fail: set[str] | None = None, delay: dict[str, float] | None = None,
                 finish_reason: str = "length") -> None:
        self.reply = reply or (lambda call: f"guidance from {call.model}")
        self.finish_reason = finish_reason
        self.fail, self.delay = fail or set(), delay or {}
        self.calls: list[UpstreamCall] = []
        self.cancelled: list[str] = []

    def _key(self, call: UpstreamCall) -> str:
        first = call.messages[0]
        return first["content"] if first["role"] == "system" and isinstance(first["content"], str) else ""

    async def chat(self, call: UpstreamCall) -> UpstreamReply:
        self.calls.append(call)
        key = self._key(call)
        try:
            for word, seconds in self.delay.items():
                if word in key:
                    await asyncio.sleep(seconds)
        except asyncio.CancelledError:
            self.cancelled.append(key)
            raise
        if any(word in key for word in self.fail):
            raise UpstreamError("upstream answered 500 after 4 attempts")
        return UpstreamReply(text=self.reply(call), prompt_tokens=100, completion_tokens=20, cost_usd=call.cost(100, 20),
                             billed=call.spend(100, 20), finish_reason=self.finish_reason)

    async def chat_stream(self, call: UpstreamCall) -> AsyncIterator[UpstreamDelta]:
        reply = await self.chat(call)
        yield UpstreamDelta(text=reply.text)
        yield UpstreamDelta(prompt_tokens=100, completion_tokens=20, finish_reason="stop", cost_usd=reply.cost_usd,
                            billed=reply.billed)


def app_args(**overrides) -> AppArgs:
    base = {
        "servers": [{"name": "a", "base_url": "http://127.0.0.1:9/v1"}, {"name": "b", "base_url": "http://127.0.0.1:9/v1"}],
        "specialists": [
            {"name": "math", "description": "mathematics and arithmetic", "server": "a", "model": "m-math",
             "system_prompt": "MATH expert", "price_in_per_m": 1, "price_out_per_m": 2},
            {"name": "conv", "description": "general conversation", "server": "a", "model": "m-conv",
             "system_prompt": "CONV assistant", "price_in_per_m": 3, "price_out_per_m": 6},
            {"name": "code", "description": "programming and code", "server": "b", "model": "m-code",
             "system_prompt": "CODE expert"},
            {"name": "eye", "description": "pictures and images", "server": "b", "model": "m-eye",
             "system_prompt": "EYE expert", "vision": True},
        ],
        "reference_server": "conv",
        "selection": {"strategy": "llm", "top_k": 2},
        "refinement": {"iterations": 1},
    }
    for key, value in overrides.items():
        base[key] = {**base[key], **value} if isinstance(base.get(key), dict) else value
    return AppArgs.model_validate(base)
