"""In-process router builders for the reliability tests (no Ray): the real FastAPI app over
injected fakes, or over real Gateways that talk HTTP to tests/upstream_sim.py."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx

from colm_serve.config import AppArgs
from colm_serve.proxies import Gateway, UpstreamCall, UpstreamDelta, UpstreamReply
from colm_serve.router.ingress import RouterService
from colm_serve.router.ledger import Ledger
from colm_serve.router.selection import AllSelector


class GatewayUpstreams:
    """The router's Upstreams port over in-process Gateways, one per server (no Ray)."""

    def __init__(self, gateways: dict[str, Gateway]) -> None:
        self.gateways = gateways

    async def chat(self, call: UpstreamCall) -> UpstreamReply:
        return await self.gateways[call.server].chat(call)

    async def chat_stream(self, call: UpstreamCall) -> AsyncIterator[UpstreamDelta]:
        async for delta in self.gateways[call.server].chat_stream(call):
            yield delta

    async def stats(self) -> dict[str, dict]:
        return {name: g.stats() for name, g in self.gateways.items()}

    async def aclose(self) -> None:
        for gateway in self.gateways.values():
            await gateway.aclose()


def router_service(args: AppArgs, *, upstreams: Any, client: Any) -> RouterService:
    """A RouterService with every Ray dependency replaced; `all` selects every specialist."""
    selectors = {"llm": AllSelector(), "all": AllSelector(), "embedding": AllSelector()}
    return RouterService(
        args, None, {}, accounts=Ledger(args.budgets), upstreams=upstreams, client=client, selectors=selectors
    )


def asgi_client(service: RouterService) -> httpx.AsyncClient:
    app = service.__serve_build_asgi_app__()
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://router", timeout=30)
