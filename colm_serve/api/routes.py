"""HTTP routes: they only map requests to the service and its results to HTTP (JSON, SSE, errors)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi import FastAPI, Header, Request
from fastapi.responses import Response, StreamingResponse

from colm_serve import telemetry
from colm_serve.api import bench, chat_body, embeddings, responses, responses_api
from colm_serve.api.auth import Authenticator
from colm_serve.api.body_limit import BodyLimit
from colm_serve.api.request_span import caller_tags, traced
from colm_serve.errors import install_error_handlers
from colm_serve.outcome import Outcome
from colm_serve.protocol.openai import ChatCompletionResponse, ErrorBody, ModelList

if TYPE_CHECKING:
    from colm_serve.service import RouterService

ERRORS = {"default": {"model": ErrorBody, "description": "OpenAI-format error"}}
# No caching, and no buffering in nginx-like proxies, so every chunk and keep-alive goes straight through.
STREAM_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def create_api(service: "RouterService") -> FastAPI:
    args = service.args
    telemetry.setup()
    auth = Authenticator(args.auth)
    app = FastAPI(title="CoLM router", version="0.1.0", description="OpenAI-compatible CoLM collaboration API.",
                  responses=ERRORS)
    install_error_handlers(app)
    app.add_middleware(BodyLimit, max_bytes=args.router.max_body_bytes)
    chat_body.document_chat_request(app)

    @app.get("/v1/models", response_model=ModelList)
    async def list_models() -> ModelList:
        return service.models()

    @app.post("/v1/chat/completions", response_model=ChatCompletionResponse, openapi_extra=chat_body.OPENAPI)
    async def chat_completions(request: Request):
        body = await chat_body.chat_request(request)
        fill_server_caps = bench.fill_server_caps(request.headers)
        authorization = request.headers.get("authorization")
        opts = body.options()
        span = telemetry.RequestSpan("colm.request", parent=request.headers, model=body.model, stream=body.stream,
                                     strategy=opts.strategy, **caller_tags(body))
        try:
            caller = auth.identify(authorization)
        except BaseException as exc:
            span.end(exc)
            raise
        span.set(client=caller.label)
        result = await traced(span, service.chat(body, caller=caller, fill_server_caps=fill_server_caps))
        if isinstance(result, Outcome):
            return Response(responses.completion_json(body.model, result, trace=opts.trace), media_type="application/json",
                            headers=responses.headers(result))
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        stream = responses.sse(body.model, result, trace=opts.trace, include_usage=include_usage,
                               progress=opts.progress, keepalive_s=args.router.keepalive_s, request=span)
        return StreamingResponse(stream, media_type="text/event-stream", headers=STREAM_HEADERS)

    @app.get("/v1/colm/stats")
    async def stats(authorization: str | None = Header(None)) -> dict:
        """Per-server and per-key counters; with auth on, a key sees only its own row unless it is an admin key."""
        caller = auth.identify(authorization)
        return await service.stats(only=None if caller.admin or not auth.enabled else caller.label)

    @app.get("/v1/colm/selectors")
    async def selectors() -> dict:
        return {"selectors": service.selector_names()}

    @app.get("/v1/colm/strategies")
    async def strategies() -> dict:
        """Each strategy: which steps run on a server and which on the client model, and its bound on server tokens."""
        return service.strategies()

    embeddings.install(app, service, auth)
    responses_api.install(app, service, auth)
    return app
