"""HTTP routes: they only map requests to the service and its results to HTTP (JSON, SSE, errors)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi import FastAPI, Header
from fastapi.responses import JSONResponse, StreamingResponse

from colm_serve.api import responses
from colm_serve.api.auth import Authenticator
from colm_serve.api.body_limit import BodyLimit
from colm_serve.errors import install_error_handlers
from colm_serve.outcome import Outcome
from colm_serve.protocol import (
    ChatCompletionRequest,
    ChatCompletionResponse,
    ErrorBody,
    ModelList,
)

if TYPE_CHECKING:
    from colm_serve.service import RouterService

ERRORS = {"default": {"model": ErrorBody, "description": "OpenAI-format error"}}


def create_api(service: "RouterService") -> FastAPI:
    args = service.args
    auth = Authenticator(args.auth)
    app = FastAPI(title="CoLM router", version="0.1.0", description="OpenAI-compatible CoLM collaboration API.",
                  responses=ERRORS)
    install_error_handlers(app)
    app.add_middleware(BodyLimit, max_bytes=args.router.max_body_bytes)

    @app.get("/v1/models", response_model=ModelList)
    async def list_models() -> ModelList:
        return service.models()

    @app.post("/v1/chat/completions", response_model=ChatCompletionResponse)
    async def chat_completions(body: ChatCompletionRequest, authorization: str | None = Header(None)):
        result = await service.chat(body, caller=auth.identify(authorization))
        trace = body.options().trace
        if isinstance(result, Outcome):
            resp = responses.completion(body.model, result, trace=trace)
            return JSONResponse(resp.model_dump(mode="json", exclude_none=True), headers=responses.headers(result))
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        stream = responses.sse(body.model, result, trace=trace, include_usage=include_usage)
        return StreamingResponse(stream, media_type="text/event-stream", headers={"Cache-Control": "no-cache"})

    @app.get("/v1/colm/stats")
    async def stats(authorization: str | None = Header(None)) -> dict:
        auth.identify(authorization)
        return await service.stats()

    @app.get("/v1/colm/selectors")
    async def selectors() -> dict:
        return {"selectors": service.selector_names()}

    return app
