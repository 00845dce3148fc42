"""ServerProxy: one per upstream server. A plain class; the app builder makes it a deployment.

It only delegates to a Gateway built with Ray Serve's metrics, so everything it does is
tested without Ray through the Gateway.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

from colm_serve.config import ServerConfig
from colm_serve.proxies.gateway import Gateway
from colm_serve.proxies.metrics import RayMetricsSink
from colm_serve.proxies.types import UpstreamCall, UpstreamDelta, UpstreamReply


def _ray_gateway(server: ServerConfig) -> Gateway:
    return Gateway(
        server,
        metrics=RayMetricsSink(),
        coalesce=server.coalesce,
        cache_ttl_s=server.cache_ttl_s,
        cache_max_entries=server.cache_max_entries,
    )


class ServerProxy:
    def __init__(
        self, server: ServerConfig | dict[str, Any], *, gateway_factory: Callable[[ServerConfig], Gateway] | None = None
    ) -> None:
        # Builders may pass the config as a dict once it has crossed a Ray boundary.
        self.server = ServerConfig.model_validate(server) if isinstance(server, dict) else server
        self._gateway = (gateway_factory or _ray_gateway)(self.server)

    async def chat(self, call: UpstreamCall) -> UpstreamReply:
        return await self._gateway.chat(call)

    async def chat_stream(self, call: UpstreamCall) -> AsyncIterator[UpstreamDelta]:
        """Use through `handle.options(stream=True).chat_stream.remote(call)`."""
        async for delta in self._gateway.chat_stream(call):
            yield delta

    async def stats(self) -> dict[str, Any]:
        return self._gateway.stats()

    async def check_health(self) -> None:
        await self._gateway.check_health()
