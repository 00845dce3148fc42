"""The OpenAI Responses API request, and its translation into a Chat Completions request.

`/v1/responses` is a translation layer over the chat path: a request becomes one
`ChatCompletionRequest` (instructions as the system message, the stored conversation of
`previous_response_id`, then the input items), so auth, budgets, strategies and accounting stay
in one place. Every parameter of the openai SDK's `ResponseCreateParams` is accepted by name;
each is honoured by mapping it to chat (which may still refuse it for a model id, see
`collab.params`), or refused here with a 400 naming it. Any other field is a 400 naming it.

Conversation items are kept as plain JSON (the wire form): they are what a stored response
carries for the next turn, and what `input_items` lists.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

from openai.types.responses.response_create_params import ResponseCreateParamsBase
from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, TypeAdapter, ValidationError, create_model

from colm_serve.errors import InvalidRequest
from colm_serve.protocol.openai import ChatCompletionRequest, StrictModel
from colm_serve.protocol.options import ColmOptions

SDK_PARAMS = frozenset(ResponseCreateParamsBase.__annotations__) | {"stream"}
# Parameters that have no Chat Completions counterpart: refused when set to anything but "off".
UNSUPPORTED = {
    "background": "responses run in the foreground only",
    "background_options": "responses run in the foreground only",
    "conversation": "conversations objects are not supported; chain turns with `previous_response_id`",
    "prompt": "stored prompt templates are not supported; send `instructions` and `input`",
    "include": "no includable outputs (logprobs, encrypted reasoning, tool results) are produced here",
    "max_tool_calls": "no built-in tools run here; the client app runs its function tools",
    "context_management": "no server-side compaction; the conversation is sent whole",
    "access_programs": "no programmatic tool calling here",
    "image": "no image generation here",
    "top_logprobs": "output_text logprobs are not produced by /v1/responses here; use /v1/chat/completions",
}
OFF_VALUES: tuple[Any, ...] = (None, False, [], {}, 0)


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex}"


# --- input items ------------------------------------------------------------------------


class Item(BaseModel):
    """An input item: the fields read are typed; the rest (`id`, `status`, ...) are kept."""

    model_config = ConfigDict(extra="allow")


class TextContent(Item):
    type: Literal["input_text", "output_text"]
    text: str


class RefusalContent(Item):
    type: Literal["refusal"]
    refusal: str


class ImageContent(Item):
    type: Literal["input_image"]
    image_url: str | None = None
    file_id: str | None = None
    detail: Literal["auto", "low", "high", "original"] | None = None


Content = Annotated[TextContent | RefusalContent | ImageContent, Field(discriminator="type")]


class MessageItem(Item):
    type: Literal["message"] = "message"
    role: Literal["user", "assistant", "system", "developer"]
    content: str | list[Content]


class FunctionCallItem(Item):
    type: Literal["function_call"]
    call_id: str = Field(min_length=1)
    name: str = Field(min_length=1)
    arguments: str


class FunctionCallOutputItem(Item):
    type: Literal["function_call_output"]
    call_id: str = Field(min_length=1)
    output: str | list[Content]


class ReasoningItem(Item):
    """A reasoning item sent back (the Agents SDK sends its history): `colm`'s steps, not part
    of the conversation a model reads, so it is kept in the history and left out of chat."""

    type: Literal["reasoning"]


def _item_type(value: Any) -> str:
    if isinstance(value, dict):
        return value.get("type", "message")
    return getattr(value, "type", "message")


InputItem = Annotated[
    Annotated[MessageItem, Tag("message")] | Annotated[FunctionCallItem, Tag("function_call")]
    | Annotated[FunctionCallOutputItem, Tag("function_call_output")] | Annotated[ReasoningItem, Tag("reasoning")],
    Discriminator(_item_type),
]
INPUT_ITEMS = TypeAdapter(list[InputItem])


# --- tools and text format --------------------------------------------------------------


class FunctionTool(StrictModel):
    type: Literal["function"]
    name: str = Field(min_length=1, max_length=64, pattern=r"^[a-zA-Z0-9_-]+$")
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None

    def chat(self) -> dict[str, Any]:
        function = self.model_dump(exclude={"type"}, exclude_none=True)
        return {"type": "function", "function": function}


class TextFormat(StrictModel):
    type: Literal["text", "json_object", "json_schema"]
    name: str | None = Field(None, min_length=1)
    schema_: dict[str, Any] | None = Field(None, alias="schema")
    strict: bool | None = None
    description: str | None = None

    def chat(self) -> dict[str, Any]:
        if self.type != "json_schema":
            return {"type": self.type}
        if self.name is None or self.schema_ is None:
            raise InvalidRequest("text.format: json_schema needs `name` and `schema`", param="text.format",
                                 code="invalid_value")
        schema = {"name": self.name, "schema": self.schema_, "strict": self.strict, "description": self.description}
        return {"type": "json_schema", "json_schema": {k: v for k, v in schema.items() if v is not None}}

    def echo(self) -> dict[str, Any]:
        return self.model_dump(by_alias=True, exclude_none=True)


class TextConfig(StrictModel):
    format: TextFormat | None = None
    verbosity: Literal["low", "medium", "high"] | None = None


# --- the request ------------------------------------------------------------------------


class _ResponsesRequest(StrictModel):
    model: str = Field(min_length=1)
    input: str | list[dict[str, Any]] | None = None
    instructions: str | None = None
    previous_response_id: str | None = Field(None, min_length=1)
    store: bool | None = None
    stream: bool = False
    stream_options: dict[str, Any] | None = None
    max_output_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    metadata: dict[str, str] | None = None
    user: str | None = None
    safety_identifier: str | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: Literal["none", "auto", "required"] | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    text: TextConfig | None = None
    reasoning: dict[str, Any] | None = None
    truncation: Literal["auto", "disabled"] | None = None
    colm: ColmOptions | None = None

    @property
    def stored(self) -> bool:
        """As OpenAI: a response is stored unless `store` is false."""
        return self.store is not False

    def input_items(self) -> list[dict[str, Any]]:
        """This turn's input as items (a string is one user message), each with an id."""
        if self.input is None:
            return []
        if isinstance(self.input, str):
            items = [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": self.input}]}]
        else:
            try:
                parsed = INPUT_ITEMS.validate_python(self.input)
            except ValidationError as exc:
                raise _invalid(exc, prefix="input.", drop=set(ITEM_PREFIX)) from None
            items = [item.model_dump(mode="json", by_alias=True, exclude_none=True) for item in parsed]
        for item in items:
            item.setdefault("type", "message")
            item.setdefault("id", new_id(ITEM_PREFIX.get(item["type"], "item")))
        return items

    def function_tools(self) -> list[FunctionTool]:
        """The function tools; any other tool type is a 400 naming it."""
        tools = []
        for i, tool in enumerate(self.tools or ()):
            if tool.get("type") != "function":
                raise InvalidRequest(f"tools.{i}: the {tool.get('type')!r} tool is not supported here; only function "
                                     "tools (the client app runs them)", param=f"tools.{i}.type", code="unsupported_value")
            try:
                tools.append(FunctionTool.model_validate(tool))
            except ValidationError as exc:
                raise _invalid(exc, prefix=f"tools.{i}.") from None
        return tools

    def chat_tool_choice(self) -> str | dict[str, Any] | None:
        choice = self.tool_choice
        if choice is None or isinstance(choice, str):
            return choice
        if choice.get("type") == "function" and isinstance(choice.get("name"), str):
            return {"type": "function", "function": {"name": choice["name"]}}
        raise InvalidRequest(f"tool_choice of type {choice.get('type')!r} is not supported; use none, auto, required "
                             "or {\"type\": \"function\", \"name\": ...}", param="tool_choice", code="unsupported_value")

    def check_supported(self) -> None:
        """A 400 naming the first parameter set to something that has no meaning here."""
        for name in sorted(self.model_fields_set & set(UNSUPPORTED)):
            if getattr(self, name) not in OFF_VALUES:
                raise InvalidRequest(f"{name} is not supported: {UNSUPPORTED[name]}", param=name,
                                     code="unsupported_parameter")
        if self.truncation == "auto":
            raise InvalidRequest("truncation 'auto' is not supported: the conversation is sent whole ('disabled')",
                                 param="truncation", code="unsupported_value")
        if (self.stream_options or {}).get("include_obfuscation"):
            raise InvalidRequest("stream_options.include_obfuscation is not supported: events are not padded",
                                 param="stream_options.include_obfuscation", code="unsupported_value")
        for key in sorted(set(self.reasoning or {}) - {"effort", "summary", "generate_summary"}):
            raise InvalidRequest(f"reasoning.{key} is not supported", param=f"reasoning.{key}", code="unsupported_parameter")

    def to_chat(self, conversation: list[dict[str, Any]]) -> ChatCompletionRequest:
        """The chat request for this turn: instructions, then `conversation` (the stored one of
        `previous_response_id` and this turn's `input_items()`)."""
        self.check_supported()
        messages = [{"role": "system", "content": self.instructions}] if self.instructions else []
        messages += chat_messages(conversation)
        tools = self.function_tools()
        fields: dict[str, Any] = {
            "model": self.model, "messages": messages, "stream": self.stream,
            "max_completion_tokens": self.max_output_tokens, "temperature": self.temperature, "top_p": self.top_p,
            "user": self.user, "safety_identifier": self.safety_identifier, "metadata": self.metadata,
            "tools": [t.chat() for t in tools] or None, "tool_choice": self.chat_tool_choice(),
            "parallel_tool_calls": self.parallel_tool_calls, "colm": self.colm,
            "response_format": self.text.format.chat() if self.text and self.text.format else None,
            "verbosity": self.text.verbosity if self.text else None,
            "reasoning_effort": (self.reasoning or {}).get("effort"),
            "stream_options": {"include_usage": True} if self.stream else None,
        }
        for name in CHAT_AS_IS:
            fields[name] = getattr(self, name)
        try:
            return ChatCompletionRequest.model_validate({k: v for k, v in fields.items() if v is not None})
        except ValidationError as exc:
            raise _invalid(exc, prefix="", rename=CHAT_TO_RESPONSES) from None


ITEM_PREFIX = {"message": "msg", "function_call": "fc", "function_call_output": "fco", "reasoning": "rs"}
# The SDK's parameters that pass to chat as they are (the chat path honours or refuses them per model id).
CHAT_AS_IS = ("service_tier", "prompt_cache_key", "prompt_cache_retention", "prompt_cache_options", "moderation")

ResponsesRequest = create_model(
    "ResponsesRequest",
    __base__=_ResponsesRequest,
    __doc__="A Responses API request: every parameter of the openai SDK's ResponseCreateParams, and CoLM's `colm` "
            "options. Any other top-level field is a 400 naming it.",
    **{name: (Any, None) for name in sorted(SDK_PARAMS - set(_ResponsesRequest.model_fields))},
)


# --- items -> chat messages -------------------------------------------------------------


def chat_messages(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Conversation items as chat messages. A function_call joins the assistant message just
    before it (chat puts an assistant turn's text and tool calls in one message); its output
    becomes a `tool` message; reasoning items are left out."""
    messages: list[dict[str, Any]] = []
    for item in items:
        kind = item.get("type", "message")
        if kind == "message":
            messages.append(_chat_message(item))
        elif kind == "function_call":
            call = {"id": item["call_id"], "type": "function",
                    "function": {"name": item["name"], "arguments": item["arguments"]}}
            last = messages[-1] if messages else None
            if last is not None and last["role"] == "assistant":
                last.setdefault("tool_calls", []).append(call)
            else:
                messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
        elif kind == "function_call_output":
            output = item["output"]
            text = output if isinstance(output, str) else "".join(p.get("text", "") for p in output)
            messages.append({"role": "tool", "tool_call_id": item["call_id"], "content": text})
    return messages


def _chat_message(item: dict[str, Any]) -> dict[str, Any]:
    role, content = item["role"], item["content"]
    if isinstance(content, str):
        return {"role": role, "content": content}
    if role == "assistant":
        text = "".join(p.get("text") or p.get("refusal") or "" for p in content)
        return {"role": role, "content": text}
    parts = []
    for part in content:
        if part["type"] in ("input_text", "output_text"):
            parts.append({"type": "text", "text": part["text"]})
        elif part["type"] == "input_image":
            if not part.get("image_url"):
                raise InvalidRequest("input_image: only `image_url` (a URL or a data: URL) is supported, not file_id",
                                     param="input", code="unsupported_value")
            image = {"url": part["image_url"], **({"detail": part["detail"]} if part.get("detail") in
                                                  ("auto", "low", "high") else {})}
            parts.append({"type": "image_url", "image_url": image})
    if len(parts) == 1 and parts[0]["type"] == "text":
        return {"role": role, "content": parts[0]["text"]}
    return {"role": role, "content": parts}


# Where a chat parameter came from, so that a chat validation error names the Responses parameter.
CHAT_TO_RESPONSES = {"messages": "input", "max_completion_tokens": "max_output_tokens", "response_format": "text.format",
                     "tools": "tools", "verbosity": "text.verbosity", "reasoning_effort": "reasoning.effort"}


def _invalid(exc: ValidationError, *, prefix: str, rename: dict[str, str] | None = None,
             drop: set[str] = frozenset()) -> InvalidRequest:
    """The first validation error as a 400 naming its parameter (`drop`: union tags in its path)."""
    errors = exc.errors(include_url=False)
    # In a `str | list` union the list's error is the one that says what is wrong with a list.
    first = next((e for e in errors if "str" not in e["loc"]), errors[0])
    loc = [str(p) for p in first["loc"] if p not in drop and p != "str" and not str(p).startswith(("list[", "tagged-union["))]
    if first["type"] == "union_tag_invalid":
        tag = first.get("ctx", {}).get("tag")
        param = prefix + ".".join([*loc, "type"])
        return InvalidRequest(f"{param}: {tag!r} is not supported here; expected one of "
                              f"{first.get('ctx', {}).get('expected_tags')}", param=param, code="unsupported_value")
    if rename and loc and loc[0] in rename:
        loc = [rename[loc[0]]] if loc[0] == "messages" else [rename[loc[0]], *loc[1:]]
    param = prefix + ".".join(loc) if loc else prefix.rstrip(".") or None
    return InvalidRequest(f"{param}: {first.get('msg', 'invalid value')}" if param else first.get("msg", "invalid"),
                          param=param, code="invalid_value")
