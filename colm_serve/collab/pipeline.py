"""The CoLM collaboration, as plain Ray-free Python.

select specialists -> gather their guidance in parallel -> aggregator summarizes ->
client model answers -> [aggregator reviews the draft -> client revises] x iterations,
stopping early when a revision changes the answer little.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

from colm_serve.accounting.usage import billed_usage
from colm_serve.client_model.chat import generate_text
from colm_serve.client_model.types import ClientLM, GenerationRequest
from colm_serve.collab import prompts, refinement
from colm_serve.collab.context import RequestContext
from colm_serve.collab.conversation import Conversation
from colm_serve.collab.guidance import GuidanceFanout, GuidanceResult
from colm_serve.collab.selection import Selection, Selector, select
from colm_serve.config import AppArgs, SpecialistConfig
from colm_serve.errors import InvalidRequest, as_colm_error
from colm_serve.outcome import Finished, Outcome
from colm_serve.protocol import ChatCompletionRequest, RoundTrace, Trace
from colm_serve.server_proxy.types import Upstreams

logger = logging.getLogger("colm_serve.pipeline")


class Collaboration:
    def __init__(self, *, args: AppArgs, upstreams: Upstreams, client: ClientLM, selectors: dict[str, Selector]) -> None:
        self._args, self._upstreams, self._client, self._selectors = args, upstreams, client, selectors
        self._fanout = GuidanceFanout(upstreams=upstreams, config=args.guidance)
        fallback = args.selection.fallback
        self._fallback = fallback + [s.name for s in args.specialists if s.name not in fallback]

    async def run(self, req: ChatCompletionRequest, ctx: RequestContext) -> Outcome:
        outcome = None
        async for event in self.events(req, ctx, stream=False):
            if isinstance(event, Outcome):
                outcome = event
        assert outcome is not None
        return outcome

    async def events(self, req: ChatCompletionRequest, ctx: RequestContext, *, stream: bool) -> AsyncIterator[str | Outcome]:
        """Text deltas of the final answer (when streaming), then the Outcome."""
        t0, trace = time.time(), Trace()
        conv = Conversation.parse(req.messages)
        selector, k, planned = self._options(req)
        affordable = k if ctx.max_specialists is None else min(k, ctx.max_specialists)
        if affordable:
            sel = await self._select(selector, conv, affordable, ctx, trace)
            guidance = await self._guidance(conv, [self._args.specialist(n) for n in sel.names], ctx, trace)
        else:
            guidance = GuidanceResult()
        if ctx.budget_note:
            trace.degrade(f"client_only: {ctx.budget_note}" if not affordable
                          else f"budget: {ctx.budget_note}; consulted {affordable} of {k} specialists")
        answer, finish, drafts = "", None, []
        for index in range(planned + 1):
            notes = await self._summary(conv, guidance, drafts, ctx, trace) if guidance.answers() else None
            round_ = RoundTrace(index=index, guidance=guidance.traces if index == 0 else [], summary=notes)
            messages = prompts.client_messages(conv.text_history(), conv.question_text(), notes, answer or None)
            gen_req = self._generation(req, messages, ctx)
            live, turn, answer_parts = stream and index == planned, _Turn(), []
            async for piece in self._client_step(gen_req, trace, live=live, turn=turn):
                answer_parts.append(piece)
                if live:
                    yield piece
            previous, answer, finish = answer, "".join(answer_parts), turn.finish
            round_.answer, round_.change = answer, refinement.change(previous, answer) if index else None
            round_.stop_reason = refinement.stop_reason(
                index=index, planned=planned, delta=round_.change, threshold=self._args.refinement.stop_change
            )
            trace.rounds.append(round_)
            drafts = [answer]
            if round_.stop_reason:
                break
        if stream and index < planned:
            yield answer  # stopped early: the finished answer was not streamed live
        trace.add_latency("total", time.time() - t0)
        yield Outcome(answer=answer, finish_reason=finish, trace=trace)

    def _options(self, req: ChatCompletionRequest) -> tuple[Selector, int, int]:
        opts, cfg = req.options(), self._args
        name = opts.selector or cfg.selection.strategy
        if name not in self._selectors:
            raise InvalidRequest(f"unknown selector {name!r}; available: {sorted(self._selectors)}", param="colm.selector")
        k = opts.top_k or cfg.selection.top_k
        if k > len(cfg.specialists):
            raise InvalidRequest(f"top_k={k} is more than the {len(cfg.specialists)} specialists", param="colm.top_k")
        planned = cfg.refinement.iterations if opts.iterations is None else opts.iterations
        if planned > cfg.refinement.max_iterations:
            raise InvalidRequest(
                f"iterations={planned} is above the limit of {cfg.refinement.max_iterations}", param="colm.iterations"
            )
        return self._selectors[name], k, planned

    async def _select(self, selector: Selector, conv: Conversation, k: int, ctx: RequestContext, trace: Trace) -> Selection:
        t = time.time()
        ctx.check("selection")
        sel = await select(
            selector, question=conv.question.text(), candidates=self._args.specialists, k=k, fallback=self._fallback, ctx=ctx
        )
        if conv.question.has_image():
            sel.names = self._with_vision(sel.names, k)
        trace.selector, trace.selected, trace.selection_fallback = sel.strategy, sel.names, sel.fallback
        trace.usage = trace.usage + sel.usage
        trace.add_latency("selection", time.time() - t)
        return sel

    def _with_vision(self, names: list[str], k: int) -> list[str]:
        """An image question needs at least one specialist that can see it, if any can."""
        specs = self._args.specialists
        if any(self._args.specialist(n).vision for n in names):
            return names
        seer = next((s.name for s in specs if s.vision), None)
        return names if seer is None else (names[: max(0, k - 1)] + [seer])

    async def _guidance(self, conv: Conversation, chosen: list[SpecialistConfig], ctx: RequestContext, trace: Trace) -> GuidanceResult:
        t = time.time()
        ctx.check("guidance")
        reserves = [self._args.specialist(n) for n in self._fallback if n not in {c.name for c in chosen}]
        result = await self._fanout.gather(
            selected=chosen,
            reserves=reserves,
            messages_for=lambda spec: prompts.guidance_messages(spec, conv.text_history(), conv.question_for(spec)),
            ctx=ctx,
        )
        trace.usage = trace.usage + result.usage
        trace.add_latency("guidance", time.time() - t)
        if not result.answers() and result.refusals and len(result.refusals) == len(result.traces):
            # Every server refused admission: that is overload, for the caller to back off from,
            # not a failure to paper over with the client model alone.
            raise max(result.refusals, key=lambda e: int(e.headers.get("Retry-After", "1")))
        if not result.answers():
            trace.degrade("client_only: no specialist answered; the client model answered alone")
            logger.warning("[%s] %s", ctx.request_id, trace.degraded[-1])
        return result

    async def _summary(self, conv: Conversation, guidance: GuidanceResult, drafts: list[str], ctx: RequestContext, trace: Trace) -> str:
        t = time.time()
        ctx.check("summary")
        agg = self._args.specialist(self._args.aggregator)
        messages = prompts.summary_messages(conv.question.text(), guidance.answers(), drafts)
        call = ctx.call(agg, messages=messages, max_tokens=self._args.refinement.summary_max_tokens, temperature=0.0)
        try:
            reply = await self._upstreams.chat(call)
            trace.usage = trace.usage + billed_usage(reply)
            notes = reply.text.strip()
        except Exception as exc:  # the guidance itself is still worth passing on
            notes = ""
            trace.degrade(f"summary failed ({as_colm_error(exc).message}); guidance passed on unsummarized")
        trace.add_latency("summary", time.time() - t)
        return notes or "\n\n".join(f"{name}: {text}" for name, text in guidance.answers().items())

    def _generation(self, req: ChatCompletionRequest, messages: list[dict], ctx: RequestContext) -> GenerationRequest:
        cfg = self._args.refinement
        return GenerationRequest(
            messages=messages,
            max_tokens=req.output_limit() or cfg.client_max_tokens,
            temperature=cfg.client_temperature if req.temperature is None else req.temperature,
            top_p=req.top_p or 1.0,
            stop=req.stop,
            seed=req.seed,
            request_id=ctx.request_id,
        )

    async def _client_step(self, gen: GenerationRequest, trace: Trace, *, live: bool, turn: "_Turn") -> AsyncIterator[str]:
        """Yields the answer's text, in pieces when live; leaves the finish reason in `turn`."""
        t = time.time()
        async for piece in generate_text(self._client, gen, trace, stream=live):
            if isinstance(piece, Finished):
                turn.finish = piece.reason
            else:
                yield piece
        trace.add_latency("client", time.time() - t)


@dataclass
class _Turn:
    finish: str | None = None
