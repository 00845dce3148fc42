"""The per-request context that travels with every step of a collaboration.

It knows who asks and until when, builds every upstream call on the request's behalf, and
meters them: every upstream reply, and every failure that was billed, adds to the request's
trace, so whatever way the request ends, its spend is known to the last token. The
collaboration never sees Ray: `upstreams` is a port (ServerProxy handles, or a fake).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from colm_serve import telemetry
from colm_serve.config import SpecialistConfig
from colm_serve.errors import DeadlineExceeded, unwrap
from colm_serve.protocol.trace import Trace
from colm_serve.protocol.usage import Usage
from colm_serve.server_proxy.types import (
    UpstreamCall,
    UpstreamDelta,
    UpstreamReply,
    Upstreams,
)


@dataclass
class RequestContext:
    """Who is asking and until when; the request's trace is its meter."""

    upstreams: Upstreams | None = None
    client: str = "anonymous"
    weight: float = 1.0
    cache: bool = True
    deadline: float | None = None
    max_specialists: int | None = None  # set by budget admission when degrading
    budget_note: str | None = None
    fill_server_caps: bool = False  # benchmarks only (api.bench): every server step writes its whole cap
    trace: Trace = field(default_factory=Trace)
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
            extra_body={"ignore_eos": True} if self.fill_server_caps else None,
            cache_key=f"colm-{spec.name}",
            price_in_per_m=spec.price_in_per_m,
            price_cached_in_per_m=spec.price_cached_in_per_m,
            price_out_per_m=spec.price_out_per_m,
            **sampling,
        )

    async def chat(self, call: UpstreamCall) -> UpstreamReply:
        """One upstream call, billed to this request whether it answers or fails; the server
        proxy's spans hang from whichever step span is open here."""
        call = call.model_copy(update={"trace_context": telemetry.inject() or None})
        try:
            reply = await self._upstreams().chat(call)
        except BaseException as exc:
            self.bill(_billed(exc))
            raise
        self.bill(reply.billed)
        return reply

    async def chat_stream(self, call: UpstreamCall) -> AsyncIterator[UpstreamDelta]:
        """A streamed upstream call; its last delta carries the bill."""
        call = call.model_copy(update={"trace_context": telemetry.inject() or None})
        try:
            async for delta in self._upstreams().chat_stream(call):
                if delta.billed is not None:
                    self.bill(delta.billed)
                yield delta
        except BaseException as exc:
            self.bill(_billed(exc))
            raise

    def bill(self, usage: Usage | None) -> None:
        if usage is not None:
            self.trace.usage = self.trace.usage + usage

    def _upstreams(self) -> Upstreams:
        if self.upstreams is None:
            raise RuntimeError("RequestContext has no upstreams to call")
        return self.upstreams


def _billed(exc: BaseException) -> Usage | None:
    """Spend a failed call still caused (retried timeouts), carried on the domain error."""
    return getattr(unwrap(exc), "billed", None)
