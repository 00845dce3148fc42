"""The router's side of the ServerProxy hop: deployment handles as the `Upstreams` port."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from colm_serve.errors import ServiceUnavailable, from_replica
from colm_serve.server_proxy.types import UpstreamCall, UpstreamDelta, UpstreamReply


class HandleUpstreams:
    """Routes each call to the ServerProxy deployment of its server."""

    def __init__(self, handles: dict[str, Any]) -> None:
        self._handles = handles

    def _proxy(self, server: str) -> Any:
        if server not in self._handles:
            raise ServiceUnavailable(f"no proxy for server {server!r}")
        return self._handles[server]

    async def chat(self, call: UpstreamCall) -> UpstreamReply:
        try:
            return await self._proxy(call.server).chat.remote(call)
        except Exception as exc:
            raise from_replica(exc) from None

    async def chat_stream(self, call: UpstreamCall) -> AsyncIterator[UpstreamDelta]:
        try:
            async for delta in self._proxy(call.server).options(stream=True).chat_stream.remote(call):
                yield delta
        except Exception as exc:
            raise from_replica(exc) from None

    async def stats(self) -> dict[str, dict]:
        return {name: await h.stats.remote() for name, h in self._handles.items()}
