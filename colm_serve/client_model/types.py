"""What callers send to and get back from a local vLLM engine deployment, and the port they use."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Protocol

from pydantic import BaseModel, Field


class GenerationRequest(BaseModel):
    messages: list[dict] = Field(min_length=1, description="Chat messages; text content only.")
    max_tokens: int | None = Field(None, ge=1, description="None: the engine's default, clamped to the context.")
    temperature: float = 0.0
    top_p: float = 1.0
    stop: list[str] | None = None
    seed: int | None = None
    request_id: str | None = None
    client: str = Field("anonymous", description="Client app label: the engine's fair queue shares slots by it.")
    weight: float = Field(1.0, gt=0, description="The client app's fair-share weight.")
    deadline: float | None = Field(None, description="Absolute time.time() after which waiting for a slot is pointless.")
    min_tokens: int = Field(0, ge=0, description="Write at least this many tokens before an end of sequence.")
    ignore_eos: bool = Field(False, description="Write until max_tokens (benchmarks of worst-case lengths).")
    continue_final_message: bool = Field(
        False, description="The last message is an assistant message whose text the model continues."
    )
    logprobs: bool = Field(False, description="Report the completion's mean token log-probability.")
    structured: dict[str, Any] | None = Field(
        None, description="vLLM structured outputs: one of regex, choice, json (a schema), json_object, grammar."
    )
    trace_context: dict[str, str] | None = Field(
        None, description="The caller's span as W3C trace-context headers (telemetry.inject())."
    )


class Generation(BaseModel):
    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str | None = None
    cached_prompt_tokens: int = Field(0, description="Prompt tokens served from the engine's prefix cache.")
    mean_logprob: float | None = Field(None, description="Mean log-probability per completion token (logprobs asked).")
    token_logprobs: list[float] | None = Field(None, description="Each sampled token's log-probability (logprobs asked).")


class GenerationDelta(BaseModel):
    """One streamed piece; the last one carries the token counts and finish reason."""

    text: str = ""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    finish_reason: str | None = None
    cached_prompt_tokens: int = 0
    mean_logprob: float | None = None
    token_logprobs: list[float] | None = Field(None, description="On the last piece, when logprobs were asked.")


class ClientLM(Protocol):
    """The port callers use for a local model: the ClientModel deployment's handle, or a fake."""

    async def generate(self, req: GenerationRequest) -> Generation: ...

    def stream(self, req: GenerationRequest) -> AsyncIterator[GenerationDelta]: ...
