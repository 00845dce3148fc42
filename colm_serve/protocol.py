"""OpenAI-compatible request/response models, plus CoLM's options, trace and usage.

Every request and response model shares one strict base so that an unknown field is a
400 naming the field, never silently ignored.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, computed_field, field_validator

from colm_serve.config import ConfidenceSignal


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid")


@dataclass(frozen=True)
class Caller:
    """Who is asking: a client app's label (a configured name or a digest, never its key) and
    its fair-share weight. The API layer finds it; every layer below only carries it."""

    label: str
    weight: float = 1.0
    admin: bool = False  # may read every key's stats


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


class ChatMessage(StrictModel):
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[ContentPart] | None = None
    name: str | None = None

    def text(self) -> str:
        """The message's text with image parts left out (for text-only models)."""
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "\n".join(p.text for p in self.content if isinstance(p, TextPart))

    def has_image(self) -> bool:
        return isinstance(self.content, list) and any(isinstance(p, ImagePart) for p in self.content)


class ColmOptions(StrictModel):
    """Per-request collaboration options, sent by OpenAI clients as `extra_body={"colm": {...}}`.

    Unset fields take the configured defaults; a field that the chosen strategy does not use is
    a 400 naming it, so a typo or a misunderstanding never silently changes nothing.
    """

    strategy: str | None = Field(None, description="Collaboration strategy (see GET /v1/colm/strategies).")
    top_k: int | None = Field(None, ge=1, description="How many specialists to consult (guide).")
    iterations: int | None = Field(None, ge=0, description="Critique-and-revise rounds after the first answer (guide).")
    selector: str | None = Field(None, description="Selection strategy name (see GET /v1/colm/selectors).")
    summary: Literal["client", "server", "none"] | None = Field(
        None, description="Who merges the guidance notes (guide): the client model, the aggregator server, or nobody."
    )
    prefix_tokens: int | None = Field(None, ge=1, description="How many tokens of the answer the server writes (shepherd).")
    threshold: float | None = Field(
        None, le=0, description="Confidence score (see `signal`) at or above which the client's answer stands (cascade)."
    )
    escalate_to: Literal["guide", "shepherd", "server"] | None = Field(
        None, description="What an unsure answer escalates to (cascade).")
    signal: ConfidenceSignal | None = Field(
        None, description="The confidence score the threshold applies to (cascade).")
    trace: bool = Field(False, description="Return the collaboration trace in the `colm` field.")
    progress: bool = Field(True, description="Stream the collaboration's steps as `delta.reasoning_content`.")
    cache: bool = Field(True, description="Allow cached upstream answers for deterministic calls.")
    deadline_s: float | None = Field(None, gt=0, description="End-to-end deadline for this request.")
    fill_server_caps: bool = Field(
        False,
        description="Benchmarks: every server step writes its whole output cap (vLLM `ignore_eos` upstream), the "
        "worst case for CoLM's cost. Needs an upstream that accepts `ignore_eos`, such as vLLM or the stand-in.",
    )


class StreamOptions(StrictModel):
    include_usage: bool = False


class ChatCompletionRequest(StrictModel):
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
    n: int = Field(1, ge=1)
    user: str | None = None
    # Accepted because common SDKs send them by default; they do not change CoLM's behaviour.
    presence_penalty: float | None = Field(None, ge=-2, le=2)
    frequency_penalty: float | None = Field(None, ge=-2, le=2)
    # vLLM's extensions: honoured by the client model and passed through to `server/<name>`.
    min_tokens: int | None = Field(None, ge=0, description="vLLM: write at least this many tokens.")
    ignore_eos: bool | None = Field(None, description="vLLM: write until max_tokens.")
    colm: ColmOptions | None = None

    @field_validator("n")
    @classmethod
    def _only_one_choice(cls, n: int) -> int:
        if n != 1:
            raise ValueError("only n=1 is supported")
        return n

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


# --- usage and trace ---------------------------------------------------------------


class Usage(BaseModel):
    """Token and cost accounting that adds up across steps, rounds and requests.

    `server_cached_prompt_tokens` is the part of `server_prompt_tokens` a provider's prefix
    cache served (billed at the cached price); `server_estimated_tokens` the part of the
    server tokens we had to estimate (attempts that timed out or were abandoned, upstreams
    that report no usage). The baseline is what the aggregator alone would have charged for
    an answer of the same length; `saving_usd` is the baseline less the cost.
    """

    server_prompt_tokens: int = 0
    server_cached_prompt_tokens: int = 0
    server_completion_tokens: int = 0
    server_estimated_tokens: int = 0
    client_prompt_tokens: int = 0
    client_completion_tokens: int = 0
    cost_usd: float = 0.0
    baseline_cost_usd: float | None = Field(
        None, description="What the aggregator alone would have charged for an answer this long: an estimate."
    )
    saving_usd: float | None = None
    baseline_estimated: bool = Field(False, description="The baseline is estimated (4 characters a token), not billed.")

    @computed_field  # type: ignore[prop-decorator]
    @property
    def server_tokens(self) -> int:
        return self.server_prompt_tokens + self.server_completion_tokens

    @computed_field  # type: ignore[prop-decorator]
    @property
    def client_tokens(self) -> int:
        return self.client_prompt_tokens + self.client_completion_tokens

    def __add__(self, other: "Usage") -> "Usage":
        def both(a: float | None, b: float | None) -> float | None:
            return None if a is None and b is None else round((a or 0.0) + (b or 0.0), 10)

        return Usage(
            server_prompt_tokens=self.server_prompt_tokens + other.server_prompt_tokens,
            server_cached_prompt_tokens=self.server_cached_prompt_tokens + other.server_cached_prompt_tokens,
            server_completion_tokens=self.server_completion_tokens + other.server_completion_tokens,
            server_estimated_tokens=self.server_estimated_tokens + other.server_estimated_tokens,
            client_prompt_tokens=self.client_prompt_tokens + other.client_prompt_tokens,
            client_completion_tokens=self.client_completion_tokens + other.client_completion_tokens,
            cost_usd=round(self.cost_usd + other.cost_usd, 10),
            baseline_cost_usd=both(self.baseline_cost_usd, other.baseline_cost_usd),
            saving_usd=both(self.saving_usd, other.saving_usd),
            baseline_estimated=self.baseline_estimated or other.baseline_estimated,
        )


class Decision(BaseModel):
    """One choice a strategy made, and why: the trace's answer to "why did it do that?"."""

    step: str
    choice: str
    why: str = ""


class GuidanceTrace(BaseModel):
    specialist: str
    server: str
    text: str | None = None
    error: str | None = None
    replaced_by: str | None = None
    completion_tokens: int = 0
    cached: bool = False
    coalesced: bool = False
    latency_s: float = 0.0


class RoundTrace(BaseModel):
    index: int
    guidance: list[GuidanceTrace] = Field(default_factory=list)
    summary: str | None = None
    prefix: str | None = Field(None, description="The opening of the answer a server wrote (shepherd).")
    critique: str | None = Field(None, description="A server's fixes for the previous draft (guide).")
    answer: str = ""
    change: float | None = Field(None, description="1 - similarity to the previous answer.")
    stop_reason: str | None = None


class Trace(BaseModel):
    """What the collaboration did, returned when the request asks for `colm.trace`."""

    strategy: str = ""
    selector: str = ""
    selected: list[str] = Field(default_factory=list)
    selection_fallback: str | None = None
    decisions: list[Decision] = Field(default_factory=list)
    rounds: list[RoundTrace] = Field(default_factory=list)
    degraded: list[str] = Field(default_factory=list, description="Every reason the answer is degraded, in order.")
    confidence: dict[str, float] = Field(
        default_factory=dict, description="cascade: every confidence score of the draft, the one decided on included.")
    usage: Usage = Field(default_factory=Usage)
    latency_s: dict[str, float] = Field(default_factory=dict)

    def add_latency(self, step: str, seconds: float) -> None:
        self.latency_s[step] = round(self.latency_s.get(step, 0.0) + seconds, 4)

    def decide(self, step: str, choice: str, why: str = "") -> None:
        self.decisions.append(Decision(step=step, choice=choice, why=why))

    def degrade(self, reason: str) -> None:
        self.degraded.append(reason)


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
    content: str


class Choice(BaseModel):
    index: int = 0
    message: ResponseMessage
    finish_reason: str | None = "stop"


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


class ChunkChoice(BaseModel):
    index: int = 0
    delta: DeltaMessage
    finish_reason: str | None = None


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
