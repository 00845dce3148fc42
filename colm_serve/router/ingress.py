"""RouterService: the router deployment's state and request handling; routes live in api.py.

It is a plain class. `app.build_app` turns it into the FastAPI ingress deployment with
`serve.ingress()`, which calls `__serve_build_asgi_app__` on each replica; tests can call
that method themselves with fake dependencies.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI

from colm_serve.config import AppArgs
from colm_serve.errors import RateLimited
from colm_serve.protocol import ChatCompletionRequest, ChatCompletionResponse, ModelCard, ModelList
from colm_serve.router import direct, responses
from colm_serve.router.api import create_api
from colm_serve.router.auth import Authenticator
from colm_serve.router.deadline import within_deadline
from colm_serve.router.handles import HandleClientLM, HandleLedger, HandleUpstreams
from colm_serve.router.pipeline import Collaboration, Outcome
from colm_serve.router.ports import ClientLM, RequestContext, Upstreams
from colm_serve.router.selection import SELECTORS, EmbeddingSelector, LLMSelector, Selector
from colm_serve.router.estimate import estimate
from colm_serve.router.ledger import Ledger
from colm_serve.router.stats import merge_stats

logger = logging.getLogger("colm_serve.router")


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
        client_model: Any,
        proxies: dict[str, Any],
        ledger: Any = None,
        *,
        accounts: Ledger | None = None,
        upstreams: Upstreams | None = None,
        client: ClientLM | None = None,
        selectors: dict[str, Selector] | None = None,
    ) -> None:
        self._args = AppArgs.model_validate(args)
        servers = {s.name for s in self._args.servers}
        if upstreams is None and set(proxies) != servers:
            raise ValueError(f"proxy handles {sorted(proxies)} do not match configured servers {sorted(servers)}")
        self._upstreams = upstreams or HandleUpstreams(proxies)
        client = client or HandleClientLM(client_model)
        self._selectors = selectors or default_selectors(self._args, self._upstreams)
        self._collab = Collaboration(args=self._args, upstreams=self._upstreams, client=client, selectors=self._selectors)
        self._direct = direct.Direct(args=self._args, upstreams=self._upstreams, client=client)
        self._auth = Authenticator(self._args.auth)
        self._ledger = accounts or HandleLedger(ledger)
        if not self._auth.enabled:
            logger.warning("no client API keys configured: /v1 accepts any caller (fine on 127.0.0.1, not beyond)")

    def __serve_build_asgi_app__(self) -> FastAPI:
        return create_api(self, max_body_bytes=self._args.router.max_body_bytes)

    def models(self) -> ModelList:
        return ModelList(data=[ModelCard(id=m) for m in direct.model_ids(self._args)])

    def selector_names(self) -> list[str]:
        return sorted(self._selectors)

    async def chat(self, req: ChatCompletionRequest, *, authorization: str | None) -> ChatCompletionResponse | AsyncIterator[str]:
        caller = self._auth.identify(authorization)
        target = direct.resolve(self._args, req.model)
        opts = req.options()
        timeout = opts.deadline_s or self._args.router.request_timeout_s
        ctx = RequestContext(client=caller.label, weight=caller.weight, cache=opts.cache, deadline=time.time() + timeout)
        admission = await self._ledger.admit(caller.label, estimate(self._args, target, req))
        if not admission.ok:
            raise RateLimited(f"budget exceeded for this API key: {admission.reason}", retry_after_s=admission.retry_after_s,
                              code="budget_exceeded")
        ctx.max_specialists, ctx.budget_note = admission.max_specialists, admission.reason
        logger.info("[%s] %s model=%s client=%s stream=%s", ctx.request_id, "chat", req.model, caller.label, req.stream)
        if target.kind == "colm":
            events = self._collab.events(req, ctx, stream=req.stream)
        else:
            events = self._direct.events(target, req, ctx, stream=req.stream)
        events = within_deadline(self._accounted(events, caller.label), ctx)
        if req.stream:
            include_usage = bool(req.stream_options and req.stream_options.include_usage)
            return responses.sse(req.model, await responses.primed(events), trace=opts.trace, include_usage=include_usage)
        outcome = [e async for e in events if isinstance(e, Outcome)][0]
        return responses.completion(req.model, outcome, trace=opts.trace)

    async def _accounted(self, events: AsyncIterator, label: str) -> AsyncIterator:
        async for event in events:
            if isinstance(event, Outcome):
                await self._ledger.record(label, event.trace.usage)
            yield event

    def headers(self, resp: ChatCompletionResponse) -> dict[str, str]:
        degraded = (resp.colm or {}).get("degraded")
        return {"X-CoLM-Degraded": degraded.split(":")[0]} if degraded else {}

    async def stats(self, *, authorization: str | None) -> dict:
        self._auth.identify(authorization)
        servers = await self._upstreams.stats() if hasattr(self._upstreams, "stats") else {}
        return merge_stats(await self._ledger.stats(), servers)

