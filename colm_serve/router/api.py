"""HTTP routes: they only map service results to HTTP (JSON, SSE, errors)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi import FastAPI, Header
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from colm_serve.errors import PayloadTooLarge, error_response, install_error_handlers
from colm_serve.protocol import ChatCompletionRequest, ChatCompletionResponse, ErrorBody, ModelList

ERRORS = {"default": {"model": ErrorBody, "description": "OpenAI-format error"}}

if TYPE_CHECKING:
    from colm_serve.router.ingress import RouterService


class BodyLimit:
    """Refuses bodies over the configured size before anything parses them (413)."""

    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            length = dict(scope.get("headers") or []).get(b"content-length")
            if length is not None and length.isdigit() and int(length) > self.max_bytes:
                err = PayloadTooLarge(f"request body is {int(length)} bytes; the limit is {self.max_bytes}", code="body_too_large")
                await error_response(err)(scope, receive, send)
                return
        await self.app(scope, receive, send)


def create_api(service: "RouterService", *, max_body_bytes: int) -> FastAPI:
    app = FastAPI(title="CoLM router", version="0.1.0", description="OpenAI-compatible CoLM collaboration API.",
                  responses=ERRORS)
    install_error_handlers(app)
    app.add_middleware(BodyLimit, max_bytes=max_body_bytes)

    @app.get("/v1/models", response_model=ModelList)
    async def list_models() -> ModelList:
        return service.models()

    @app.post("/v1/chat/completions", response_model=ChatCompletionResponse)
    async def chat_completions(body: ChatCompletionRequest, authorization: str | None = Header(None)):
        result = await service.chat(body, authorization=authorization)
        if isinstance(result, ChatCompletionResponse):
            return JSONResponse(result.model_dump(mode="json", exclude_none=True), headers=service.headers(result))
        return StreamingResponse(result, media_type="text/event-stream", headers={"Cache-Control": "no-cache"})

    @app.get("/v1/colm/stats")
    async def stats(authorization: str | None = Header(None)) -> dict:
        return await service.stats(authorization=authorization)

    @app.get("/v1/colm/selectors")
    async def selectors() -> dict:
        return {"selectors": service.selector_names()}

    return app

