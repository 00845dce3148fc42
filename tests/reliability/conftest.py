"""In-process router builders for the reliability tests (no Ray): the real FastAPI app over
injected fakes, or over real Gateways that talk HTTP to tests/upstream_sim.py."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import uvicorn

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


class ServedApp:
    """An ASGI app on a real uvicorn socket (127.0.0.1, ephemeral port) in a background thread,
    so that a client can really drop its connection mid-response."""

    def __init__(self, app: Any) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        config = uvicorn.Config(app, log_level="warning", lifespan="off", timeout_graceful_shutdown=2)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [sock]}, daemon=True)

    def __enter__(self) -> "ServedApp":
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the app did not start")
            time.sleep(0.01)  # polls a server thread from the test thread; no event loop here
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)


@pytest.fixture(scope="session")
def ray_driver():
    """A driver connection to the running app's Ray cluster (serve-marked tests only)."""
    import ray

    ray.init(address="auto", log_to_driver=False, logging_level="ERROR")
    yield
    ray.shutdown()
