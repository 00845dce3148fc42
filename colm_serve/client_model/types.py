"""What callers send to and get back from a local vLLM engine deployment."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol

from pydantic import BaseModel, Field


class GenerationRequest(BaseModel):
    messages: list[dict] = Field(min_length=1, description="Chat messages; text content only.")
    max_tokens: int | None = Field(None, ge=1, description="None: the engine's default, clamped to the context.")
    temperature: float = 0.0
    top_p: float = 1.0
    stop: list[str] | None = None
    seed: int | None = None
    request_id: str | None = None


class Generation(BaseModel):
    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str | None = None


class GenerationDelta(BaseModel):
    """One streamed piece; the last one carries the token counts and finish reason."""

    text: str = ""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    finish_reason: str | None = None


class ClientLM(Protocol):
    """The port callers use for a local model: the ClientModel deployment's handle, or a fake."""

    async def generate(self, req: GenerationRequest) -> Generation: ...

    def stream(self, req: GenerationRequest) -> AsyncIterator[GenerationDelta]: ...
