"""The callers' side of the ClientModel deployment: a Ray Serve handle as a `ClientLM` port."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from colm_serve.client_model.types import Generation, GenerationDelta, GenerationRequest
from colm_serve.errors import from_replica


class HandleClientLM:
    def __init__(self, handle: Any) -> None:
        self._handle = handle

    async def generate(self, req: GenerationRequest) -> Generation:
        try:
            return await self._handle.generate.remote(req)
        except Exception as exc:
            raise from_replica(exc) from None

    async def stream(self, req: GenerationRequest) -> AsyncIterator[GenerationDelta]:
        try:
            async for delta in self._handle.options(stream=True).stream.remote(req):
                yield delta
        except Exception as exc:
            raise from_replica(exc) from None
