"""What the router sends to a ServerProxy and what comes back."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Protocol

from pydantic import BaseModel, Field

from colm_serve.protocol.usage import Usage


class UpstreamCall(BaseModel):
    """One chat completion at one upstream server, on behalf of one client app."""

    server: str
    model: str
    messages: list[dict] = Field(min_length=1, description="OpenAI-format messages (may hold image parts).")
    max_tokens: int = Field(ge=1)
    temperature: float = 0.0
    top_p: float | None = None
    seed: int | None = None
    stop: list[str] | None = None
    client: str = Field("anonymous", description="Client app label (never the key): fairness and stats.")
    weight: float = Field(1.0, gt=0, description="The client's fair-share weight.")
    cache: bool = Field(True, description="May be answered from the response cache.")
    deadline: float | None = Field(None, description="Absolute time.time() after which to give up.")
    extra_body: dict | None = Field(None, description="Provider extensions sent as they are, e.g. vLLM's ignore_eos.")
    cache_key: str | None = Field(
        None, description="The provider's `prompt_cache_key` for this call's prompt prefix (a specialist's own).")
    params: dict[str, Any] | None = Field(
        None, description="The pass-through: the client app's own request parameters (every key but model and "
        "messages), sent exactly as the client sent them; the answer comes back whole (`body`, `chunk`).")
    trace_context: dict[str, str] | None = Field(
        None, description="The caller's span as W3C trace-context headers (telemetry.inject()); not part of any cache key."
    )
    price_in_per_m: float = 0.0
    price_cached_in_per_m: float | None = None
    price_out_per_m: float = 0.0

    def deterministic(self) -> bool:
        return self.temperature == 0 or self.seed is not None

    def choices(self) -> int:
        """How many answers the call asks for (the pass-through's `n`)."""
        n = (self.params or {}).get("n")
        return n if isinstance(n, int) and n > 1 else 1

    def output_bound(self) -> int:
        """The most completion tokens the call can be billed for: every choice at its cap."""
        return self.max_tokens * self.choices()

    def cost(self, prompt_tokens: int, completion_tokens: int, cached_prompt_tokens: int = 0) -> float:
        cached_price = self.price_in_per_m if self.price_cached_in_per_m is None else self.price_cached_in_per_m
        fresh = prompt_tokens - cached_prompt_tokens
        return (fresh * self.price_in_per_m + cached_prompt_tokens * cached_price + completion_tokens * self.price_out_per_m) / 1e6

    def spend(self, prompt_tokens: int, completion_tokens: int, cached_prompt_tokens: int = 0, *, estimated: bool = False) -> Usage:
        """What the provider bills for one attempt with these counts, as server usage."""
        return Usage(
            server_prompt_tokens=prompt_tokens,
            server_cached_prompt_tokens=cached_prompt_tokens,
            server_completion_tokens=completion_tokens,
            server_estimated_tokens=prompt_tokens + completion_tokens if estimated else 0,
            cost_usd=round(self.cost(prompt_tokens, completion_tokens, cached_prompt_tokens), 10),
        )


class UpstreamReply(BaseModel):
    """The answer, its own token counts, and `billed`: what the caller that got it is billed.

    `billed` covers every attempt the caller caused (a retried timeout included) and is zero
    for a cache hit; coalesced callers share one upstream request's bill.
    """

    text: str
    prompt_tokens: int = 0
    cached_prompt_tokens: int = 0
    completion_tokens: int = 0
    billed: Usage = Field(default_factory=Usage)
    finish_reason: str | None = None
    cached: bool = False
    coalesced: bool = False
    attempts: int = 1
    latency_s: float = 0.0
    cost_usd: float = 0.0
    body: dict[str, Any] | None = Field(None, description="The pass-through: the upstream's whole JSON answer.")


class UpstreamDelta(BaseModel):
    """One streamed piece of a pass-through call; the last carries the counts and the bill."""

    text: str = ""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    finish_reason: str | None = None
    cost_usd: float = 0.0
    billed: Usage | None = None
    chunk: dict[str, Any] | None = Field(None, description="The pass-through: the upstream's chunk as it came.")


class Upstreams(Protocol):
    """The port the router uses for upstream servers: ServerProxy handles, or a fake."""

    async def chat(self, call: UpstreamCall) -> UpstreamReply: ...

    def chat_stream(self, call: UpstreamCall) -> AsyncIterator[UpstreamDelta]: ...


def cached_prompt_tokens(usage: object | None) -> int:
    """Prompt tokens a provider served from its prefix cache: OpenAI's (and vLLM's)
    `prompt_tokens_details.cached_tokens`, or DeepSeek's `prompt_cache_hit_tokens`."""
    if usage is None:
        return 0
    if isinstance(usage, dict):  # the JSON as it came
        details = usage.get("prompt_tokens_details") or {}
        cached = details.get("cached_tokens") if isinstance(details, dict) else None
        return int(cached if cached is not None else usage.get("prompt_cache_hit_tokens") or 0)
    details = getattr(usage, "prompt_tokens_details", None)
    cached = getattr(details, "cached_tokens", None) if details is not None else None
    if cached is None:
        extra = getattr(usage, "model_extra", None) or {}
        cached = extra.get("prompt_cache_hit_tokens")
    return int(cached or 0)
