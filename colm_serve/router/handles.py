"""Adapters from Ray Serve deployment handles to the pipeline's ports."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from ray.exceptions import RayActorError

from colm_serve.client_model.types import Generation, GenerationDelta, GenerationRequest
from colm_serve.errors import ColmError, ServiceUnavailable, unwrap
from colm_serve.proxies.types import UpstreamCall, UpstreamDelta, UpstreamReply


def _domain(exc: Exception) -> Exception:
    """Ray wraps a replica's exception (RayTaskError); callers want the domain error back."""
    inner = unwrap(exc)
    if isinstance(inner, ColmError):
        return inner
    if isinstance(exc, RayActorError):  # ActorDiedError, ActorUnavailableError
        # The replica died mid-request; Serve is replacing it, so the caller may retry.
        return ServiceUnavailable(
            f"a replica serving this request failed ({type(exc).__name__}); retry shortly",
            code="replica_failed",
            headers={"Retry-After": "10"},
        )
    return exc


class HandleClientLM:
    def __init__(self, handle: Any) -> None:
        self._handle = handle

    async def generate(self, req: GenerationRequest) -> Generation:
        try:
            return await self._handle.generate.remote(req)
        except Exception as exc:
            raise _domain(exc) from None

    async def stream(self, req: GenerationRequest) -> AsyncIterator[GenerationDelta]:
        try:
            async for delta in self._handle.options(stream=True).stream.remote(req):
                yield delta
        except Exception as exc:
            raise _domain(exc) from None


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
            raise _domain(exc) from None

    async def chat_stream(self, call: UpstreamCall) -> AsyncIterator[UpstreamDelta]:
        try:
            async for delta in self._proxy(call.server).options(stream=True).chat_stream.remote(call):
                yield delta
        except Exception as exc:
            raise _domain(exc) from None

    async def stats(self) -> dict[str, dict]:
        return {name: await h.stats.remote() for name, h in self._handles.items()}


class HandleLedger:
    """The shared Ledger deployment, called by every router replica."""

    def __init__(self, handle: Any) -> None:
        self._handle = handle

    async def admit(self, label: str, estimate: Any) -> Any:
        return await self._handle.admit.remote(label, estimate)

    async def record(self, label: str, usage: Any) -> None:
        await self._handle.record.remote(label, usage)

    async def stats(self) -> dict:
        return await self._handle.stats.remote()
