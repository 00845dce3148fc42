"""The embedded stand-in for a cloud provider: an OpenAI-compatible server over a local engine.

The router reaches it over real HTTP with the openai SDK, exactly as it reaches OpenAI or
DeepSeek, so the offline default exercises the same code path as a cloud deployment.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse, StreamingResponse

from colm_serve.api import responses
from colm_serve.client_model.chat import generate_text, to_generation
from colm_serve.client_model.handle import HandleClientLM
from colm_serve.client_model.types import ClientLM
from colm_serve.config import StandInArgs
from colm_serve.errors import NotFound, install_error_handlers
from colm_serve.outcome import Outcome, primed, with_outcome
from colm_serve.protocol import ChatCompletionRequest, ModelCard, ModelList, Trace


class StandInService:
    def __init__(self, args: StandInArgs | dict, engine: Any, *, client: ClientLM | None = None) -> None:
        self._args = StandInArgs.model_validate(args)
        self._client = client or HandleClientLM(engine)

    def __serve_build_asgi_app__(self) -> FastAPI:
        app = FastAPI(title="CoLM embedded upstream", description="OpenAI-compatible server over a local vLLM model.")
        install_error_handlers(app)

        @app.get("/v1/models", response_model=ModelList)
        async def models() -> ModelList:
            return ModelList(data=[ModelCard(id=m, owned_by="local") for m in self._args.served_models])

        @app.post("/v1/chat/completions")
        async def chat(body: ChatCompletionRequest):
            if body.model not in self._args.served_models:
                raise NotFound(
                    f"The model {body.model!r} does not exist. Available models: {', '.join(self._args.served_models)}",
                    param="model",
                    code="model_not_found",
                )
            events = self.events(body)
            if body.stream:
                usage = bool(body.stream_options and body.stream_options.include_usage)
                return StreamingResponse(responses.sse(body.model, await primed(events), trace=None, include_usage=usage), media_type="text/event-stream")
            outcome = [e async for e in events if isinstance(e, Outcome)][0]
            return JSONResponse(responses.completion(body.model, outcome, trace=None).model_dump(mode="json", exclude_none=True))

        return app

    async def events(self, body: ChatCompletionRequest) -> AsyncIterator[str | Outcome]:
        gen = to_generation(body, model_name=body.model, request_id=uuid.uuid4().hex)
        if gen.max_tokens is None:
            gen.max_tokens = self._args.default_max_tokens
        trace = Trace()
        async for event in with_outcome(generate_text(self._client, gen, trace, stream=body.stream), trace):
            yield event
