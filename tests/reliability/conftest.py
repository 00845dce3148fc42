"""In-process router builders for the reliability tests (no Ray): the real FastAPI app over
injected fakes, or over real ServerProxies that talk HTTP to tests/upstream_sim.py."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import uvicorn

from colm_serve.accounting.ledger import Ledger
from colm_serve.accounting.stores import MemoryStore
from colm_serve.api.routes import create_api
from colm_serve.collab.selection import AllSelector
from colm_serve.config import AppArgs
from colm_serve.server_proxy.proxy import ServerProxy
from colm_serve.server_proxy.types import UpstreamCall, UpstreamDelta, UpstreamReply
from colm_serve.service import RouterService


class ProxyUpstreams:
    """The router's Upstreams port over in-process ServerProxies, one per server (no Ray)."""

    def __init__(self, proxies: dict[str, ServerProxy]) -> None:
        self.proxies = proxies

    async def chat(self, call: UpstreamCall) -> UpstreamReply:
        return await self.proxies[call.server].chat(call)

    async def chat_stream(self, call: UpstreamCall) -> AsyncIterator[UpstreamDelta]:
        async for delta in self.proxies[call.server].chat_stream(call):
            yield delta

    async def stats(self) -> dict[str, dict]:
        return {name: g.stats() for name, g in self.proxies.items()}

    async def aclose(self) -> None:
        for proxy in self.proxies.values():
            await proxy.aclose()


def router_service(args: AppArgs, *, upstreams: Any, client: Any) -> RouterService:
    """A RouterService with every Ray dependency replaced; `all` selects every specialist."""
    selectors = {"llm": AllSelector(), "all": AllSelector(), "embedding": AllSelector()}
    return RouterService(args, ledger=Ledger(args.budgets, MemoryStore()), upstreams=upstreams, client=client, selectors=selectors
    )


def asgi_client(service: RouterService) -> httpx.AsyncClient:
    app = create_api(service)
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
