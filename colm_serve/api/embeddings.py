"""POST /v1/embeddings: OpenAI's embeddings API over the router's local sentence encoder."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi import FastAPI, Header
from fastapi.responses import Response

from colm_serve.api.auth import Authenticator
from colm_serve.protocol.embeddings import EmbeddingRequest, EmbeddingResponse

if TYPE_CHECKING:
    from colm_serve.service import RouterService


def install(app: FastAPI, service: "RouterService", auth: Authenticator) -> None:
    @app.post("/v1/embeddings", response_model=EmbeddingResponse)
    async def embeddings(body: EmbeddingRequest, authorization: str | None = Header(None)) -> Response:
        caller = auth.identify(authorization)
        resp = await service.embeddings(body, caller=caller)
        # Straight to JSON in pydantic-core: 2048 vectors through FastAPI's encoder would hold the loop.
        return Response(resp.model_dump_json(), media_type="application/json")
