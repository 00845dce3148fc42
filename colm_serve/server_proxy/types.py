"""What the router sends to a ServerProxy and what comes back."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol

from pydantic import BaseModel, Field


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
    price_in_per_m: float = 0.0
    price_out_per_m: float = 0.0

    def deterministic(self) -> bool:
        return self.temperature == 0 or self.seed is not None

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        return (prompt_tokens * self.price_in_per_m + completion_tokens * self.price_out_per_m) / 1e6


class UpstreamReply(BaseModel):
    text: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    finish_reason: str | None = None
    cached: bool = False
    coalesced: bool = False
    attempts: int = 1
    latency_s: float = 0.0
    cost_usd: float = 0.0


class UpstreamDelta(BaseModel):
    """One streamed piece of a pass-through call; the last carries the counts."""

    text: str = ""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    finish_reason: str | None = None
    cost_usd: float = 0.0


class Upstreams(Protocol):
    """The port the router uses for upstream servers: ServerProxy handles, or a fake."""

    async def chat(self, call: UpstreamCall) -> UpstreamReply: ...

    def chat_stream(self, call: UpstreamCall) -> AsyncIterator[UpstreamDelta]: ...
