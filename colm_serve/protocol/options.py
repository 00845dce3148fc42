"""The `colm` options of a chat request: how the collaboration should run for this request."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from colm_serve.config import ConfidenceSignal, DraftCheck


class ColmOptions(BaseModel):
    """Per-request collaboration options, sent by OpenAI clients as `extra_body={"colm": {...}}`.

    Unset fields take the configured defaults; a field that the chosen strategy does not use is
    a 400 naming it, so a typo or a misunderstanding never silently changes nothing. An unknown
    field is a 400 too.
    """

    model_config = ConfigDict(extra="forbid")

    strategy: str | None = Field(None, description="Collaboration strategy (see GET /v1/colm/strategies).")
    top_k: int | None = Field(None, ge=1, description="How many specialists to consult (guide).")
    iterations: int | None = Field(None, ge=0, description="Critique-and-revise rounds after the first answer (guide).")
    selector: str | None = Field(None, description="Selection strategy name (see GET /v1/colm/selectors).")
    summary: Literal["client", "server", "none"] | None = Field(
        None, description="Who merges the guidance notes (guide): the client model, the reference server, or "
        "nobody.")
    prefix_tokens: int | None = Field(None, ge=1, description="How many tokens of the answer the server writes (shepherd).")
    threshold: float | None = Field(
        None, le=0, description="Confidence score (see `signal`) at or above which the client's answer stands (cascade)."
    )
    escalate_to: Literal["guide", "shepherd", "server"] | None = Field(
        None, description="What an unsure answer escalates to (cascade).")
    signal: ConfidenceSignal | None = Field(
        None, description="The confidence score the threshold applies to (cascade).")
    check: DraftCheck | None = Field(
        None, description="The check run on the draft before its score decides (cascade): none or examples.")
    draft_tokens: int | None = Field(
        None, ge=0, description="How much of an unsure draft the escalation sees (cascade); 0 escalates afresh.")
    trace: bool = Field(False, description="Return the collaboration trace in the `colm` field.")
    progress: bool = Field(True, description="Stream the collaboration's steps as `delta.reasoning_content`.")
    cache: bool = Field(True, description="Allow cached upstream answers for deterministic calls.")
    deadline_s: float | None = Field(None, gt=0, description="End-to-end deadline for this request.")
