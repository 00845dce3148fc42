"""Per-answer cost, tokens and latency, kept in a sidecar beside each answer file.

A sidecar rather than extra fields, so the official readers see exactly their own records.
"""

from __future__ import annotations

import time
from typing import Any

from pydantic import BaseModel, Field

from clients.eval.client import Reply
from colm_serve.protocol.usage import Usage


class AnswerUsage(BaseModel):
    """What one answer (all its turns) cost."""

    question_id: int | str
    name: str = Field(description="Output name (the answer file's stem).")
    model: str = Field(description="Model id asked at the endpoint.")
    strategy: str | None = Field(None, description="CoLM strategy asked for (colm.strategy), if any.")
    base_url: str
    turns: int
    latency_s: float = Field(description="Sum over turns of each request's wall time.")
    prompt_tokens: int
    completion_tokens: int
    colm: Usage | None = Field(None, description="CoLM usage summed over turns; None when the endpoint sent none.")
    tstamp: float = Field(default_factory=time.time)

    @classmethod
    def from_replies(cls, replies: list[Reply], **fields: Any) -> "AnswerUsage":
        usages = [r.colm for r in replies]
        colm = sum(usages, Usage()) if usages and all(u is not None for u in usages) else None  # type: ignore[arg-type]
        return cls(
            turns=len(replies),
            latency_s=round(sum(r.latency_s for r in replies), 4),
            prompt_tokens=sum(r.prompt_tokens for r in replies),
            completion_tokens=sum(r.completion_tokens for r in replies),
            colm=colm,
            **fields,
        )
