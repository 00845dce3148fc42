"""RouterService: one chat request from a known caller to its answer.

caller -> budget admission -> the collaboration (`colm`) or a baseline (`colm-client`,
`server/<name>`) -> accounting. It returns the Outcome, or for a stream the events that end
in one; the API layer maps either to HTTP. It is plain Python over injected ports, so tests
drive it with fakes; `api.ingress.RouterIngress` wires it to deployment handles.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from typing import Any

from colm_serve.accounting.ledger import Ledger
from colm_serve.accounting.stats import merge_stats
from colm_serve.client_model.types import ClientLM
from colm_serve.collab import baselines
from colm_serve.collab.context import RequestContext
from colm_serve.collab.estimate import estimate
from colm_serve.collab.pipeline import Collaboration
from colm_serve.collab.selection import (
    SELECTORS,
    EmbeddingSelector,
    LLMSelector,
    Selector,
)
from colm_serve.config import AppArgs
from colm_serve.deadline import Deadline, within_deadline
from colm_serve.errors import RateLimited
from colm_serve.outcome import Outcome, primed
from colm_serve.protocol import Caller, ChatCompletionRequest, ModelCard, ModelList
from colm_serve.server_proxy.types import Upstreams

logger = logging.getLogger("colm_serve.service")


def default_selectors(args: AppArgs, upstreams: Upstreams) -> dict[str, Selector]:
    picker = args.specialist(args.selection.selector_specialist or args.aggregator)
    built: dict[str, Selector] = {
        "all": SELECTORS["all"](),
        "llm": LLMSelector(upstreams=upstreams, picker=picker, max_tokens=args.selection.max_tokens),
        "embedding": EmbeddingSelector(model=args.selection.embedding_model),
    }
    assert set(built) == set(SELECTORS), "every registered selector needs a constructor here"
    return built


class RouterService:
    def __init__(
        self,
        args: AppArgs | dict,
        *,
        upstreams: Upstreams,
        client: ClientLM,
        ledger: Ledger | Any,
        selectors: dict[str, Selector] | None = None,
    ) -> None:
        self.args = AppArgs.model_validate(args)
        self._upstreams = upstreams
        self._selectors = selectors or default_selectors(self.args, upstreams)
        self._collab = Collaboration(args=self.args, upstreams=upstreams, client=client, selectors=self._selectors)
        self._baselines = baselines.Baselines(args=self.args, upstreams=upstreams, client=client)
        self._ledger = ledger

    def models(self) -> ModelList:
        return ModelList(data=[ModelCard(id=m) for m in baselines.model_ids(self.args)])

    def selector_names(self) -> list[str]:
        return sorted(self._selectors)

    async def chat(self, req: ChatCompletionRequest, *, caller: Caller) -> Outcome | AsyncIterator:
        """The Outcome; with `stream` the events ending in one, run up to the first so that
        errors before any output still get their HTTP status."""
        target = baselines.resolve(self.args, req.model)
        opts = req.options()
        timeout = opts.deadline_s or self.args.router.request_timeout_s
        ctx = RequestContext(client=caller.label, weight=caller.weight, cache=opts.cache, deadline=time.time() + timeout)
        admission = await self._ledger.admit(caller.label, estimate(self.args, target, req))
        if not admission.ok:
            raise RateLimited(f"budget exceeded for this API key: {admission.reason}", retry_after_s=admission.retry_after_s,
                              code="budget_exceeded")
        ctx.max_specialists, ctx.budget_note = admission.max_specialists, admission.reason
        logger.info("[%s] chat model=%s client=%s stream=%s", ctx.request_id, req.model, caller.label, req.stream)
        if target.kind == "colm":
            events = self._collab.events(req, ctx, stream=req.stream)
        else:
            events = self._baselines.events(target, req, ctx, stream=req.stream)
        events = within_deadline(self._accounted(events, caller.label), Deadline.from_wall(ctx.deadline))
        if req.stream:
            return await primed(events)
        return [e async for e in events if isinstance(e, Outcome)][0]

    async def _accounted(self, events: AsyncIterator, label: str) -> AsyncIterator:
        async for event in events:
            if isinstance(event, Outcome):
                await self._ledger.record(label, event.trace.usage)
            yield event

    async def stats(self) -> dict:
        servers = await self._upstreams.stats() if hasattr(self._upstreams, "stats") else {}
        return merge_stats(await self._ledger.stats(), servers)

