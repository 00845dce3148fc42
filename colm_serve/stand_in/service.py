"""The embedded stand-in for a cloud provider: an OpenAI-compatible server over a local engine.

The router reaches it over real HTTP with the openai SDK, exactly as it reaches OpenAI or
DeepSeek, so the offline default exercises the same code path as a cloud deployment.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any, Literal

from fastapi import FastAPI
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import Field, model_validator

from colm_serve.api import responses
from colm_serve.client_model.chat import generate_text, to_generation
from colm_serve.client_model.handle import HandleClientLM
from colm_serve.client_model.types import ClientLM
from colm_serve.config import StandInArgs
from colm_serve.errors import NotFound, install_error_handlers
from colm_serve.outcome import Outcome, primed, with_outcome
from colm_serve.protocol.openai import ChatCompletionRequest, ModelCard, ModelList, StrictModel
from colm_serve.protocol.trace import Trace


class JsonSchema(StrictModel):
    name: str = Field(min_length=1)
    schema_: dict[str, Any] = Field(default_factory=dict, alias="schema")
    strict: bool | None = None
    description: str | None = None


class ResponseFormat(StrictModel):
    """OpenAI's `response_format`: free text, any JSON object, or JSON that fits a schema."""

    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchema | None = None

    @model_validator(mode="after")
    def _schema_given(self) -> "ResponseFormat":
        if self.type == "json_schema" and self.json_schema is None:
            raise ValueError("response_format.json_schema is required with type json_schema")
        return self


class StandInRequest(ChatCompletionRequest):
    """A chat request as vLLM's OpenAI server takes it: OpenAI's `response_format`, and vLLM's
    `structured_outputs` ({"regex"|"choice"|"json"|"grammar": ...}) for constrained output."""

    response_format: ResponseFormat | None = None
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
        fmt = self.response_format
        if fmt is None or fmt.type == "text":
            return None
        if fmt.type == "json_object":
            return {"json_object": True}
        return {"json": fmt.json_schema.schema_}


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
                return StreamingResponse(responses.sse(body.model, await primed(events), trace=None, include_usage=usage), media_type="text/event-stream")
            outcome = [e async for e in events if isinstance(e, Outcome)][0]
            return JSONResponse(responses.completion(body.model, outcome, trace=None).model_dump(mode="json", exclude_none=True))

        return app

    async def events(self, body: StandInRequest) -> AsyncIterator[str | Outcome]:
        gen = to_generation(body, model_name=body.model, request_id=uuid.uuid4().hex, structured=body.structured())
        if gen.max_tokens is None:
            gen.max_tokens = self._args.default_max_tokens
        trace = Trace()
        async for event in with_outcome(generate_text(self._client, gen, trace, stream=body.stream), trace):
            yield event
