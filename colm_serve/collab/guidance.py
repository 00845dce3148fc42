"""Guidance fan-out: the selected specialists are asked in parallel, with short budgets.

A specialist that fails is replaced by the next-best one while reserves last. With a quorum
the step goes on once k answers are in; with a deadline it goes on with whatever has arrived
by then. Stragglers are cancelled either way, so no upstream work is left orphaned. Every
call is billed through the request context, an empty note included: the server wrote it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from colm_serve import telemetry
from colm_serve.collab.context import RequestContext
from colm_serve.config import GuidanceConfig, SpecialistConfig
from colm_serve.errors import RateLimited, as_colm_error
from colm_serve.protocol.trace import GuidanceTrace
from colm_serve.server_proxy.types import UpstreamReply


@dataclass
class GuidanceResult:
    traces: list[GuidanceTrace] = field(default_factory=list)
    refusals: list[RateLimited] = field(default_factory=list)

    def answers(self) -> dict[str, str]:
        return {t.specialist: t.text for t in self.traces if t.text}


class GuidanceFanout:
    def __init__(self, *, config: GuidanceConfig) -> None:
        self._cfg = config

    async def gather(
        self,
        *,
        selected: list[SpecialistConfig],
        reserves: list[SpecialistConfig],
        messages_for: Callable[[SpecialistConfig], list[dict]],
        ctx: RequestContext,
        on_note: Callable[[GuidanceTrace], None] = lambda trace: None,
    ) -> GuidanceResult:
        """`on_note` sees each specialist's outcome as it lands (for streamed progress)."""
        started = time.time()
        limits = [d for d in (started + self._cfg.deadline_s if self._cfg.deadline_s else None, ctx.deadline) if d]
        deadline = min(limits) if limits else None
        quorum = min(self._cfg.quorum or len(selected), len(selected))
        reserves = list(reserves)
        traces = {s.name: GuidanceTrace(specialist=s.name, server=s.server) for s in selected}
        result = GuidanceResult()
        pending: dict[asyncio.Task, tuple[str, SpecialistConfig, float]] = {}

        def launch(slot: str, spec: SpecialistConfig) -> None:
            call = ctx.call(spec, messages=messages_for(spec), max_tokens=self._cfg.max_tokens,
                            temperature=self._cfg.temperature, deadline=deadline)
            pending[asyncio.create_task(_traced(ctx, spec, call))] = (slot, spec, time.time())

        for spec in selected:
            launch(spec.name, spec)
        try:
            while pending and sum(1 for t in traces.values() if t.text) < quorum:
                timeout = None if deadline is None else max(0.0, deadline - time.time())
                done, _ = await asyncio.wait(pending, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
                if not done:
                    break
                for task in done:
                    slot, spec, t0 = pending.pop(task)
                    _record(task, traces[slot], t0, result)
                    on_note(traces[slot])
                    if traces[slot].error and reserves:
                        spare = reserves.pop(0)
                        traces[slot].replaced_by = spare.name
                        traces[spare.name] = GuidanceTrace(specialist=spare.name, server=spare.server)
                        launch(spare.name, spare)
        finally:
            for task, (slot, _, _) in pending.items():
                task.cancel()
                if not traces[slot].text and not traces[slot].error:
                    traces[slot].error = "cancelled: quorum reached or deadline passed"
            # Wait for the cancellations to land, so no upstream call outlives this request.
            await asyncio.gather(*pending, return_exceptions=True)
        result.traces = list(traces.values())
        return result


async def _traced(ctx: RequestContext, spec: SpecialistConfig, call) -> UpstreamReply:
    with telemetry.span("colm.guidance", specialist=spec.name, server=spec.server) as span:
        reply = await ctx.chat(call)
        span.set(prompt_tokens=reply.prompt_tokens, completion_tokens=reply.completion_tokens,
                 cost_usd=reply.billed.cost_usd, cached=reply.cached, coalesced=reply.coalesced,
                 retries=max(0, reply.attempts - 1))
        return reply


def _record(task: asyncio.Task, trace: GuidanceTrace, t0: float, result: GuidanceResult) -> None:
    trace.latency_s = round(time.time() - t0, 4)
    if task.exception() is not None:
        err = as_colm_error(task.exception())
        trace.error = f"{err.type}: {err.message}"
        if isinstance(err, RateLimited):
            result.refusals.append(err)
        return
    reply: UpstreamReply = task.result()
    trace.cached, trace.coalesced, trace.completion_tokens = reply.cached, reply.coalesced, reply.completion_tokens
    if not reply.text.strip():
        trace.error = "empty guidance"  # billed all the same: the server spent the tokens
        return
    trace.text = reply.text.strip()
