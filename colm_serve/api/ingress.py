"""The Router deployment: the HTTP API over a RouterService wired to deployment handles.

`app.build_app` deploys it with `serve.ingress()`, which calls `__serve_build_asgi_app__` on
each replica.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from colm_serve.accounting.conversations import build_response_store
from colm_serve.accounting.ledger import Ledger
from colm_serve.accounting.metrics import router_metrics
from colm_serve.accounting.stores import build_store
from colm_serve.api.auth import Authenticator
from colm_serve.api.routes import create_api
from colm_serve.client_model.handle import HandleClientLM
from colm_serve.config import AppArgs
from colm_serve.server_proxy.handle import HandleUpstreams
from colm_serve.service import RouterService, logger


class RouterIngress:
    def __init__(self, args: AppArgs | dict, client_model: Any, proxies: dict[str, Any]) -> None:
        args = AppArgs.model_validate(args)
        servers = {s.name for s in args.servers}
        if set(proxies) != servers:
            raise ValueError(f"proxy handles {sorted(proxies)} do not match configured servers {sorted(servers)}")
        store = build_store(args.accounting)
        self._ledger = Ledger(args.budgets, store)
        self.service = RouterService(
            args, upstreams=HandleUpstreams(proxies), client=client_model and HandleClientLM(client_model),
            ledger=self._ledger, metrics=router_metrics("ray"),
            responses=build_response_store(args.accounting, budget_store=store),
        )
        if not Authenticator(args.auth).enabled:
            logger.warning("no client API keys configured: /v1 accepts any caller (fine on 127.0.0.1, not beyond)")
        # A replica takes traffic only once built: load the local encoder now, not on a request.
        self.service.warm()

    def __serve_build_asgi_app__(self) -> FastAPI:
        return create_api(self.service)

    async def __del__(self) -> None:
        """Serve calls it on a graceful stop: settlements still queued are written first."""
        await self._ledger.aclose()
