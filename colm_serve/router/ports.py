"""The pipeline's two dependencies, as protocols, and the per-request context.

The pipeline never sees Ray: the router deployment injects adapters over deployment handles,
tests inject fakes.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Protocol

from colm_serve.client_model.types import Generation, GenerationDelta, GenerationRequest
from colm_serve.config import SpecialistConfig
from colm_serve.errors import DeadlineExceeded
from colm_serve.protocol import Usage
from colm_serve.proxies.types import UpstreamCall, UpstreamDelta, UpstreamReply


class ClientLM(Protocol):
    async def generate(self, req: GenerationRequest) -> Generation: ...

    def stream(self, req: GenerationRequest) -> AsyncIterator[GenerationDelta]: ...


class Upstreams(Protocol):
    async def chat(self, call: UpstreamCall) -> UpstreamReply: ...

    def chat_stream(self, call: UpstreamCall) -> AsyncIterator[UpstreamDelta]: ...


@dataclass
class RequestContext:
    """Who is asking and until when; travels with every upstream call."""

    client: str = "anonymous"
    weight: float = 1.0
    cache: bool = True
    deadline: float | None = None
    max_specialists: int | None = None  # set by budget admission when degrading
    budget_note: str | None = None
    request_id: str = field(default_factory=lambda: uuid.uuid4().hex[:16])

    def remaining(self) -> float | None:
        return None if self.deadline is None else self.deadline - time.time()

    def check(self, step: str) -> None:
        left = self.remaining()
        if left is not None and left <= 0:
            raise DeadlineExceeded(f"the request's deadline passed before step {step!r}")

    def call(self, spec: SpecialistConfig, *, messages: list[dict], max_tokens: int, temperature: float,
             deadline: float | None = None, **sampling) -> UpstreamCall:
        """A call to `spec` on behalf of this request: who asks, until when, and at what price."""
        return UpstreamCall(
            server=spec.server,
            model=spec.model,
            messages=messages,
            max_tokens=max_tokens,
            temperature=temperature,
            client=self.client,
            weight=self.weight,
            cache=self.cache,
            deadline=self.deadline if deadline is None else deadline,
            price_in_per_m=spec.price_in_per_m,
            price_out_per_m=spec.price_out_per_m,
            **sampling,
        )


def billed_usage(reply: UpstreamReply) -> Usage:
    """Tokens this request caused upstream: a cache hit or a coalesced follower caused none."""
    if reply.cached or reply.coalesced:
        return Usage()
    return Usage(
        server_prompt_tokens=reply.prompt_tokens,
        server_completion_tokens=reply.completion_tokens,
        cost_usd=reply.cost_usd,
    )
