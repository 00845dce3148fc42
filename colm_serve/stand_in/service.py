"""The embedded stand-in for a cloud provider: an OpenAI-compatible server over a local engine.

The router reaches it over real HTTP with the openai SDK, exactly as it reaches OpenAI or
DeepSeek, so the offline default exercises the same code path as a cloud deployment.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import model_validator

from colm_serve.client_model.completions import completion_events
from colm_serve.client_model.handle import HandleClientLM
from colm_serve.client_model.types import ClientLM
from colm_serve.config import StandInArgs
from colm_serve.errors import NotFound, as_colm_error, install_error_handlers
from colm_serve.outcome import Chunk, Completion, primed
from colm_serve.protocol.openai import ChatCompletionRequest, ModelCard, ModelList
from colm_serve.protocol.trace import Trace


class StandInRequest(ChatCompletionRequest):
    """A chat request as vLLM's OpenAI server takes it: OpenAI's `response_format`, and vLLM's
    `structured_outputs` ({"regex"|"choice"|"json"|"grammar": ...}) for constrained output."""

    structured_outputs: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _one_constraint(self) -> "StandInRequest":
        if self.structured_outputs is not None:
            kinds = set(self.structured_outputs) & {"regex", "choice", "json", "grammar", "json_object"}
            if len(kinds) != 1:
                raise ValueError("structured_outputs takes exactly one of regex, choice, json, grammar, json_object")
            if self.response_format is not None and self.response_format.type != "text":
                raise ValueError("give response_format or structured_outputs, not both")
        return self

    def structured(self) -> dict[str, Any] | None:
        if self.structured_outputs is not None:
            return self.structured_outputs
        return self.response_format.structured() if self.response_format else None


class StandInService:
    def __init__(self, args: StandInArgs | dict, engine: Any, *, client: ClientLM | None = None) -> None:
        self._args = StandInArgs.model_validate(args)
        self._client = client or HandleClientLM(engine)

    def __serve_build_asgi_app__(self) -> FastAPI:
        app = FastAPI(title="CoLM embedded upstream", description="OpenAI-compatible server over a local vLLM model.")
        install_error_handlers(app)

        @app.get("/v1/models", response_model=ModelList, response_model_exclude_none=True)
        async def models() -> ModelList:
            # `max_model_len` as vLLM's server lists it: clients fit their max_tokens into it.
            length = self._args.engine.max_model_len
            return ModelList(data=[ModelCard(id=m, owned_by="local", max_model_len=length)
                                   for m in self._args.served_models])

        @app.post("/v1/chat/completions")
        async def chat(body: StandInRequest):
            if body.model not in self._args.served_models:
                raise NotFound(
                    f"The model {body.model!r} does not exist. Available models: {', '.join(self._args.served_models)}",
                    param="model",
                    code="model_not_found",
                )
            events = self.events(body)
            if body.stream:
                usage = bool(body.stream_options and body.stream_options.include_usage)
                return StreamingResponse(sse(await primed(events), include_usage=usage), media_type="text/event-stream")
            completion = [e async for e in events][-1]
            return JSONResponse(completion.body)

        return app

    def events(self, body: StandInRequest) -> AsyncIterator[Chunk | Completion]:
        """The answer as vLLM's OpenAI server gives it (n, logprobs, tools, response_format and
        structured_outputs), written by the same code as `colm-client`."""
        return completion_events(
            self._client, body, model_name=body.model, request_id=uuid.uuid4().hex, trace=Trace(),
            stream=body.stream, default_max_tokens=self._args.default_max_tokens, structured=body.structured(),
        )


async def sse(chunks: AsyncIterator[Chunk], *, include_usage: bool) -> AsyncIterator[str]:
    """The chunks as server-sent events, the usage chunk only when asked, then [DONE]. A failure
    after the stream started is sent as an OpenAI error event (the status is already 200)."""
    try:
        async for chunk in chunks:
            if chunk.body["choices"] or include_usage:
                yield f"data: {json.dumps(chunk.body)}\n\n"
    except Exception as exc:
        yield f"data: {json.dumps(as_colm_error(exc).body())}\n\n"
    yield "data: [DONE]\n\n"
