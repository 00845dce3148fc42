"""What callers send to and get back from a local vLLM engine deployment, and the port they use."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Protocol

from pydantic import BaseModel, Field


LOWEST_LOGPROB = -9999.0  # JSON has no -inf; vLLM's server clamps to the same floor


class TopLogprob(BaseModel):
    """A token and its log-probability, as OpenAI's `logprobs.content[].top_logprobs[]`."""

    token: str
    logprob: float
    bytes: list[int] | None = None

    @classmethod
    def of(cls, token: str, logprob: float | None) -> "TopLogprob":
        """A token's entry, its log-probability clamped to what JSON can carry (None: unknown, lowest)."""
        return cls(token=token, logprob=LOWEST_LOGPROB if logprob is None else max(logprob, LOWEST_LOGPROB),
                   bytes=list(token.encode("utf-8", errors="replace")))


class TokenLogprob(TopLogprob):
    """One written token, as OpenAI's `logprobs.content[]`: the most likely alternatives beside it."""

    top_logprobs: list[TopLogprob] = Field(default_factory=list)


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
    top_logprobs: int | None = Field(
        None, ge=0, le=20, description="Report every token (OpenAI logprobs) with this many most likely alternatives."
    )
    n: int = Field(1, ge=1, le=128, description="Answers to write from the one prompt (vLLM's n).")
    presence_penalty: float = Field(0.0, ge=-2, le=2)
    frequency_penalty: float = Field(0.0, ge=-2, le=2)
    logit_bias: dict[int, float] | None = Field(None, description="Token id -> bias added to its logit.")
    structured: dict[str, Any] | None = Field(
        None, description="vLLM structured outputs: one of regex, choice, json (a schema), json_object, grammar."
    )
    trace_context: dict[str, str] | None = Field(
        None, description="The caller's span as W3C trace-context headers (telemetry.inject())."
    )


class Sample(BaseModel):
    """One of a request's n answers."""

    index: int = 0
    text: str
    completion_tokens: int
    finish_reason: str | None = None
    logprobs: list[TokenLogprob] | None = Field(None, description="Every token, when top_logprobs was asked.")


class Generation(BaseModel):
    """The answer. Its text, finish reason and log-probabilities are the first answer's; with
    n > 1 or top_logprobs, `samples` holds every answer and completion_tokens counts them all."""

    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str | None = None
    cached_prompt_tokens: int = Field(0, description="Prompt tokens served from the engine's prefix cache.")
    mean_logprob: float | None = Field(None, description="Mean log-probability per completion token (logprobs asked).")
    token_logprobs: list[float] | None = Field(None, description="Each sampled token's log-probability (logprobs asked).")
    samples: list[Sample] = Field(default_factory=list)

    def all_samples(self) -> list[Sample]:
        """Every answer; a Generation without samples is one answer, the text."""
        return self.samples or [Sample(text=self.text, completion_tokens=self.completion_tokens,
                                       finish_reason=self.finish_reason)]


class GenerationDelta(BaseModel):
    """One streamed piece of answer `index`. The piece that ends an answer carries its finish
    reason, its completion tokens and the prompt's; with n = 1 that is the last piece."""

    index: int = 0
    text: str = ""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    finish_reason: str | None = None
    cached_prompt_tokens: int = 0
    mean_logprob: float | None = None
    token_logprobs: list[float] | None = Field(None, description="On the last piece, when logprobs were asked.")
    logprobs: list[TokenLogprob] | None = Field(None, description="This piece's tokens, when top_logprobs was asked.")


class ClientLM(Protocol):
    """The port callers use for a local model: the ClientModel deployment's handle, or a fake."""

    async def generate(self, req: GenerationRequest) -> Generation: ...

    def stream(self, req: GenerationRequest) -> AsyncIterator[GenerationDelta]: ...
