"""RouterService: one chat request from a known caller to its answer.

caller -> the model's plan (a strategy for `colm`, the pass-through otherwise) -> budget admission
against the plan's bound -> the work -> accounting, whatever way the request ends. It returns
the Outcome, or for a stream the events that end in one; the API layer maps either to HTTP.
It is plain Python over injected ports, so tests drive it with fakes;
`api.ingress.RouterIngress` wires it to deployment handles.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from typing import Any

from colm_serve import telemetry
from colm_serve.accounting.conversations import MemoryResponses, ResponseStore
from colm_serve.accounting.ledger import Admission, Estimate, Ledger
from colm_serve.accounting.metrics import count_request
from colm_serve.accounting.stats import merge_stats
from colm_serve.client_model.types import ClientLM
from colm_serve.collab import params, passthrough
from colm_serve.collab.context import RequestContext
from colm_serve.collab.conversation import Conversation
from colm_serve.collab.embedding_model import SentenceEncoder
from colm_serve.collab.estimate import baseline_cost, server_alone
from colm_serve.collab.selection import (
    SELECTORS,
    EmbeddingSelector,
    LLMSelector,
    Selector,
)
from colm_serve.collab.steps import Run, Steps
from colm_serve.collab.strategies import Strategy, build_strategies
from colm_serve.config import AppArgs
from colm_serve.deadline import Deadline, within_deadline
from colm_serve.errors import InvalidRequest, NotFound, RateLimited
from colm_serve.outcome import Outcome, primed
from colm_serve.protocol.caller import Caller
from colm_serve.protocol.embeddings import EmbeddingRequest, EmbeddingResponse
from colm_serve.protocol.openai import ChatCompletionRequest, ModelCard, ModelList
from colm_serve.protocol.usage import Usage
from colm_serve.server_proxy.metrics import MetricsSink, NullSink
from colm_serve.server_proxy.types import Upstreams

logger = logging.getLogger("colm_serve.service")
PASSTHROUGH_OPTIONS = frozenset({"trace", "cache", "deadline_s", "progress"})


def default_selectors(args: AppArgs, encoder: SentenceEncoder | None = None) -> dict[str, Selector]:
    """`encoder`: the loaded model the embedding selector shares with /v1/embeddings."""
    picker = args.specialist(args.selection.selector_specialist or args.reference_server)
    built: dict[str, Selector] = {
        "all": SELECTORS["all"](),
        "llm": LLMSelector(picker=picker, max_tokens=args.selection.max_tokens),
        "embedding": EmbeddingSelector(model=args.selection.embedding_model, specialists=args.specialists,
                                       encoder_factory=encoder and encoder.selector_encoder),
    }
    assert set(built) == set(SELECTORS), "every registered selector needs a constructor here"
    return built


class RouterService:
    def __init__(
        self,
        args: AppArgs | dict,
        *,
        upstreams: Upstreams,
        client: ClientLM | None,
        ledger: Ledger | Any,
        selectors: dict[str, Selector] | None = None,
        metrics: MetricsSink | None = None,
        encoder: SentenceEncoder | None = None,
        responses: ResponseStore | None = None,
    ) -> None:
        self.args = AppArgs.model_validate(args)
        self._upstreams = upstreams
        self._encoder = encoder or SentenceEncoder(self.args.selection.embedding_model)
        self._selectors = selectors or default_selectors(self.args, self._encoder)
        self._strategies = build_strategies(Steps(args=self.args, client=client, selectors=self._selectors))
        self._passthrough = passthrough.PassThrough(args=self.args, client=client)
        self._ledger = ledger
        self._metrics = metrics or NullSink()
        self.responses = responses or MemoryResponses()  # stored /v1/responses (api.responses_api)

    def warm(self) -> None:
        """Load what the first request would otherwise wait for (the embedding encoder)."""
        self._encoder.warm()
        for selector in self._selectors.values():
            if hasattr(selector, "warm"):
                selector.warm()

    def models(self) -> ModelList:
        embedder = ModelCard(id=self._encoder.name, description="sentence embeddings: POST /v1/embeddings")
        return ModelList(data=[ModelCard(id=m) for m in passthrough.model_ids(self.args)] + [embedder])

    async def embeddings(self, req: EmbeddingRequest, *, caller: Caller) -> EmbeddingResponse:
        """Vectors from the local encoder the embedding selector uses; no server is called, so
        nothing is billed, but the request is counted."""
        if req.model != self._encoder.name:
            raise NotFound(f"The model {req.model!r} does not exist for embeddings. Available models: {self._encoder.name}",
                           param="model", code="model_not_found")
        try:
            done = await self._encoder.embed(req.inputs(), dimensions=req.dimensions)
        finally:
            count_request(self._metrics, client=caller.label, model=req.model, usage=Usage())
        return EmbeddingResponse.of(req.model, done.vectors, tokens=done.tokens, encoding_format=req.encoding_format)

    def selector_names(self) -> list[str]:
        return sorted(self._selectors)

    def strategies(self) -> dict[str, Any]:
        return {"default": self.args.collaboration.strategy, "reference_server": self.args.reference_server,
                "strategies": [s.describe() for s in self._strategies.values()]}

    async def chat(self, req: ChatCompletionRequest, *, caller: Caller,
                   fill_server_caps: bool = False) -> Outcome | AsyncIterator:
        """The Outcome; with `stream` the events ending in one, run up to the first so that
        errors before any output still get their HTTP status. `fill_server_caps` is the
        benchmarks' knob (api.bench): every server call writes its whole output cap."""
        target = passthrough.resolve(self.args, req.model)
        params.check(req, target.kind)
        self._check_output_limit(req, target)
        opts = req.options()
        timeout = opts.deadline_s or self.args.router.request_timeout_s
        ctx = RequestContext(upstreams=self._upstreams, client=caller.label, weight=caller.weight, cache=opts.cache,
                             deadline=time.time() + timeout, fill_server_caps=fill_server_caps)
        if target.kind == "colm":
            strategy = self._strategy(req)
            run = Run(req=req, conv=Conversation.parse(req.messages), ctx=ctx, stream=req.stream)
            bound, events, label = strategy.bound(run), strategy.events(run), strategy.name
        else:
            bound, label = self._passthrough_plan(target, req), req.model
            events = self._passthrough.events(target, req, ctx, stream=req.stream)
        with telemetry.span("colm.admission", client=caller.label, bound_tokens=bound.server_tokens) as span:
            admission = await self._ledger.admit(caller.label, bound)
            span.set(ok=admission.ok, reason=admission.reason, max_specialists=admission.max_specialists)
        telemetry.current().set(request_id=ctx.request_id, target=target.kind, strategy=label if target.kind == "colm" else None)
        if not admission.ok:
            await events.aclose()
            raise RateLimited(f"budget exceeded for this API key: {admission.reason}", retry_after_s=admission.retry_after_s,
                              code="budget_exceeded")
        ctx.max_specialists, ctx.budget_note = admission.max_specialists, admission.reason
        logger.info("[%s] chat model=%s client=%s stream=%s", ctx.request_id, req.model, caller.label, req.stream)
        events = within_deadline(self._settled(events, admission, ctx, req, colm=target.kind == "colm", label=label),
                                 Deadline.from_wall(ctx.deadline))
        if req.stream:
            return await primed(events)
        return [e async for e in events if isinstance(e, Outcome)][0]

    def _check_output_limit(self, req: ChatCompletionRequest, target: passthrough.Target) -> None:
        """An answer longer than the client model's context cannot be written: a 400 now, not an
        error in the middle of a stream that has already begun. (The engine checks the exact sum.)"""
        limit, cm = req.output_limit(), self.args.client_model
        if cm and target.kind in ("colm", "client") and limit is not None and limit >= cm.engine.max_model_len:
            param = "max_completion_tokens" if req.max_completion_tokens else "max_tokens"
            raise InvalidRequest(f"{param}={limit} does not fit the client model's context of {cm.engine.max_model_len} "
                                 f"tokens", param=param, code="context_length_exceeded")

    def _strategy(self, req: ChatCompletionRequest) -> Strategy:
        opts = req.options()
        name = opts.strategy or self.args.collaboration.strategy
        if name not in self._strategies:
            raise InvalidRequest(f"unknown strategy {name!r}; available: {sorted(self._strategies)}", param="colm.strategy")
        strategy = self._strategies[name]
        strategy.check(opts)
        strategy.check_request(req)
        return strategy

    def _passthrough_plan(self, target: passthrough.Target, req: ChatCompletionRequest) -> Estimate:
        for name in sorted(req.options().model_fields_set - PASSTHROUGH_OPTIONS):
            raise InvalidRequest(f"colm.{name} applies to model colm, not {req.model}", param=f"colm.{name}")
        if target.kind == "client":
            return Estimate()
        messages = [m.model_dump(exclude_none=True) for m in req.messages]
        return server_alone(target.specialist, messages, (req.output_limit() or passthrough.ANSWER_CAP) * req.n)

    async def _settled(self, events: AsyncIterator, admission: Admission, ctx: RequestContext, req: ChatCompletionRequest,
                       *, colm: bool, label: str) -> AsyncIterator:
        """Whatever way the request ends (answer, error, deadline, disconnect), what it spent is
        recorded: the trace has metered every upstream call as it came back."""
        try:
            async for event in events:
                if isinstance(event, Outcome) and colm:
                    self._add_baseline(ctx, req, event.answer)
                yield event
        finally:
            try:
                await events.aclose()
            finally:
                count_request(self._metrics, client=ctx.client, model=label, usage=ctx.trace.usage)
                await self._ledger.settle(admission, ctx.trace.usage)

    def _add_baseline(self, ctx: RequestContext, req: ChatCompletionRequest, answer: str) -> None:
        """What the reference server alone would have charged for an answer this long (an estimate)."""
        usage = ctx.trace.usage
        reference = self.args.specialist(self.args.reference_server)
        messages = [m.model_dump(exclude_none=True) for m in req.messages]
        usage.baseline_cost_usd = baseline_cost(reference, messages, answer)
        usage.saving_usd = round(usage.baseline_cost_usd - usage.cost_usd, 10)
        usage.baseline_estimated = True

    async def stats(self, *, only: str | None = None) -> dict:
        """Counters per server and per key; `only` keeps one key's row (and its share of each
        server's counters), which is all a caller sees when auth is on."""
        servers = await self._upstreams.stats() if hasattr(self._upstreams, "stats") else {}
        return merge_stats(await self._ledger.stats(), servers, only=only)

