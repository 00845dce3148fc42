"""The OpenAI chat-completions wire models: requests, responses, stream chunks, models, errors.

Every request model shares one strict base, so that an unknown field is a 400 naming the field,
never silently ignored. A request carries CoLM's options in its `colm` field; responses carry
CoLM's usage and trace as a plain `colm` object.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any, Literal

from openai.types.chat.completion_create_params import CompletionCreateParamsBase
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, create_model, field_validator, model_validator

from colm_serve.protocol.options import ColmOptions

# Every Chat Completions parameter of the openai SDK in use, read from its own types so that the
# list follows the SDK: `server/<name>` forwards each one as sent.
SDK_PARAMS = frozenset(CompletionCreateParamsBase.__annotations__) | {"stream"}
# vLLM's extensions, honoured by the client model and forwarded to `server/<name>`.
VLLM_PARAMS = frozenset({"min_tokens", "ignore_eos"})


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --- request -------------------------------------------------------------------------


class ImageURL(StrictModel):
    url: str = Field(min_length=1)
    detail: Literal["auto", "low", "high"] | None = None


class TextPart(StrictModel):
    type: Literal["text"]
    text: str


class ImagePart(StrictModel):
    type: Literal["image_url"]
    image_url: ImageURL


ContentPart = TextPart | ImagePart


class ToolCallFunction(BaseModel):
    model_config = ConfigDict(extra="allow")
    name: str
    arguments: str


class ToolCall(BaseModel):
    model_config = ConfigDict(extra="allow")
    id: str
    type: Literal["function"] = "function"
    function: ToolCallFunction


class ChatMessage(BaseModel):
    """One message. The fields CoLM reads are typed; any other field of the SDK's message types
    (audio, refusal, ...) is kept, and `server/<name>` forwards the message as it was sent."""

    model_config = ConfigDict(extra="allow")
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[ContentPart | dict[str, Any]] | None = None
    name: str | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None

    def text(self) -> str:
        """The message's text with image parts left out (for text-only models)."""
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "\n".join(p.text for p in self.content if isinstance(p, TextPart))  # other parts: see has_other_parts

    def has_image(self) -> bool:
        return isinstance(self.content, list) and any(isinstance(p, ImagePart) for p in self.content)


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow")  # e.g. include_obfuscation: forwarded as sent
    include_usage: bool = False


class FunctionDefinition(BaseModel):
    model_config = ConfigDict(extra="allow")
    name: str = Field(min_length=1, max_length=64, pattern=r"^[a-zA-Z0-9_-]+$")
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class Tool(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: Literal["function"]
    function: FunctionDefinition


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

    def structured(self) -> dict[str, Any] | None:
        """As vLLM's structured outputs take it; None for free text."""
        if self.type == "text":
            return None
        if self.type == "json_object":
            return {"json_object": True}
        return {"json": self.json_schema.schema_}


class _ChatCompletionRequest(StrictModel):
    model: str = Field(min_length=1)
    messages: list[ChatMessage] = Field(min_length=1)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    stop: str | list[str] | None = None
    # vLLM seeds a 64-bit torch generator: a larger seed would crash the engine, not the request.
    seed: int | None = Field(None, ge=-(2**63), le=2**63 - 1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    n: int = Field(1, ge=1, le=128)
    user: str | None = None
    tools: list[Tool] | None = None
    tool_choice: Literal["none", "auto", "required"] | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    response_format: ResponseFormat | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = Field(None, ge=0, le=20)
    # Accepted because common SDKs send them by default; they do not change CoLM's behaviour.
    presence_penalty: float | None = Field(None, ge=-2, le=2)
    frequency_penalty: float | None = Field(None, ge=-2, le=2)
    # vLLM's extensions: honoured by the client model and passed through to `server/<name>`.
    min_tokens: int | None = Field(None, ge=0, description="vLLM: write at least this many tokens.")
    ignore_eos: bool | None = Field(None, description="vLLM: write until max_tokens.")
    colm: ColmOptions | None = None
    _raw: bytes | None = PrivateAttr(None)

    @field_validator("stop")
    @classmethod
    def _stop_list(cls, stop: str | list[str] | None) -> list[str] | None:
        if stop is None:
            return None
        stops = [stop] if isinstance(stop, str) else stop
        if len(stops) > 4:
            raise ValueError("at most 4 stop sequences")
        if not all(stops):
            raise ValueError("stop sequences must not be empty")
        return stops

    @field_validator("messages")
    @classmethod
    def _ends_with_a_question(cls, messages: list[ChatMessage]) -> list[ChatMessage]:
        if not any(m.role == "user" and (m.text().strip() or m.has_image()) for m in messages):
            raise ValueError("messages must contain at least one non-empty user message")
        return messages

    def output_limit(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens

    def options(self) -> ColmOptions:
        return self.colm or ColmOptions()

    @classmethod
    def from_json(cls, raw: bytes | str) -> "_ChatCompletionRequest":
        """Validated from the body's bytes, which are kept: `sent()` returns them as they came."""
        req = cls.model_validate_json(raw)
        req._raw = raw.encode() if isinstance(raw, str) else raw
        return req

    def sent(self) -> dict[str, Any]:
        """The body as the client sent it (every key and value untouched), for the pass-through."""
        if self._raw is not None:
            return json.loads(self._raw)
        return self.model_dump(mode="json", exclude_unset=True, by_alias=True)

    def sent_params(self) -> set[str]:
        """The top-level parameters the client set."""
        return set(self.model_fields_set)

    def wants_tools(self) -> bool:
        return bool(self.tools) and self.tool_choice != "none"


# The SDK's parameters that CoLM does not read itself: accepted as any JSON value, so that
# `server/<name>` forwards them; each model id honours or refuses them (collab.params).
ChatCompletionRequest = create_model(
    "ChatCompletionRequest",
    __base__=_ChatCompletionRequest,
    __doc__="A Chat Completions request: every parameter of the openai SDK, vLLM's min_tokens and "
            "ignore_eos, and CoLM's `colm` options. Any other top-level field is a 400 naming it.",
    **{name: (Any, None) for name in sorted(SDK_PARAMS - set(_ChatCompletionRequest.model_fields))},
)


# --- response ------------------------------------------------------------------------


class PromptTokensDetails(BaseModel):
    cached_tokens: int = 0


class OpenAIUsage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    prompt_tokens_details: PromptTokensDetails | None = None


class ResponseMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str | None
    tool_calls: list[ToolCall] | None = None
    refusal: str | None = None


class Choice(BaseModel):
    index: int = 0
    message: ResponseMessage
    finish_reason: str | None = "stop"
    logprobs: dict[str, Any] | None = None


class ChatCompletionResponse(BaseModel):
    id: str = Field(default_factory=lambda: f"chatcmpl-{uuid.uuid4().hex}")
    object: Literal["chat.completion"] = "chat.completion"
    created: int = Field(default_factory=lambda: int(time.time()))
    model: str
    choices: list[Choice]
    usage: OpenAIUsage
    colm: dict[str, Any] | None = None


class DeltaMessage(BaseModel):
    role: Literal["assistant"] | None = None
    content: str | None = None
    # The convention of vLLM and DeepSeek for a model's thinking; CoLM streams its steps here.
    reasoning_content: str | None = None
    tool_calls: list[dict[str, Any]] | None = None


class ChunkChoice(BaseModel):
    index: int = 0
    delta: DeltaMessage
    finish_reason: str | None = None
    logprobs: dict[str, Any] | None = None


class ChatCompletionChunk(BaseModel):
    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChunkChoice]
    usage: OpenAIUsage | None = None
    colm: dict[str, Any] | None = None


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int = 0
    owned_by: str = "colm"
    description: str | None = None
    max_model_len: int | None = None


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class ErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorBody(BaseModel):
    """Every error response, in OpenAI's format."""

    error: ErrorDetail
