"""The per-request context that travels with every step of a collaboration.

The collaboration never sees Ray: its two dependencies are ports (`ClientLM` from
client_model, `Upstreams` from server_proxy); the router injects adapters over deployment
handles, tests inject fakes.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field

from colm_serve.config import SpecialistConfig
from colm_serve.errors import DeadlineExceeded
from colm_serve.server_proxy.types import UpstreamCall


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

