"""What a collaboration did and why: returned in the `colm` field when the request asks for it."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from colm_serve.protocol.usage import Usage


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


class CheckVerdict(BaseModel):
    """A cascade check of the draft (colm_serve/collab/checks); `none` means there was nothing to
    check, so the confidence score alone decided."""

    name: str
    outcome: Literal["passed", "failed", "none"]
    examples: int = Field(0, description="How many examples the question showed.")
    detail: str = ""


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
    check: CheckVerdict | None = Field(None, description="cascade: the check run on the draft, when one is configured.")
    usage: Usage = Field(default_factory=Usage)
    latency_s: dict[str, float] = Field(default_factory=dict)

    def add_latency(self, step: str, seconds: float) -> None:
        self.latency_s[step] = round(self.latency_s.get(step, 0.0) + seconds, 4)

    def decide(self, step: str, choice: str, why: str = "") -> None:
        self.decisions.append(Decision(step=step, choice=choice, why=why))

    def degrade(self, reason: str) -> None:
        self.degraded.append(reason)
