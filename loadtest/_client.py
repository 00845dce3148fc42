"""One chat turn through the official `openai` SDK, timed, with CoLM's usage read back.

Free of Locust on purpose: tests drive it directly against a fake server, and the Locust
user turns its results into events.
"""

from __future__ import annotations

import time
from typing import Any

import openai
from openai import OpenAI
from pydantic import BaseModel, ConfigDict, Field


class ColmUsage(BaseModel):
    """The `colm.usage` object every CoLM response carries (extra fields are kept)."""

    model_config = ConfigDict(extra="allow")

    server_tokens: int = Field(ge=0)
    client_tokens: int = Field(ge=0)
    cost_usd: float = Field(ge=0)


class TurnResult(BaseModel):
    model_config = ConfigDict(extra="forbid")

    answer: str
    e2e_s: float
    ttft_s: float | None = Field(None, description="Streamed requests only: time to the first content token.")
    usage: ColmUsage
    completion_tokens: int | None = None


class TurnError(Exception):
    """A failed turn, named by the OpenAI SDK's error class so failures group by type."""

    def __init__(self, kind: str, *, status: int | None, error_type: str | None, message: str, e2e_s: float) -> None:
        super().__init__(message)
        self.kind, self.status, self.error_type, self.e2e_s = kind, status, error_type, e2e_s
        self.message = message

    def short(self) -> str:
        """What Locust's failure table groups by: class, HTTP status and error type, no free text."""
        parts = [self.kind]
        if self.status is not None:
            parts.append(str(self.status))
        if self.error_type:
            parts.append(self.error_type)
        return " ".join(parts)

    @classmethod
    def from_openai(cls, error: openai.OpenAIError, e2e_s: float) -> "TurnError":
        return cls(type(error).__name__, status=getattr(error, "status_code", None),
                   error_type=getattr(error, "type", None), message=str(error), e2e_s=e2e_s)


def make_client(*, base_url: str, api_key: str, timeout_s: float) -> OpenAI:
    """No SDK retries: a 429 or 503 must show up in the load test, not be hidden by a retry."""
    client = OpenAI(base_url=base_url.rstrip("/") + "/v1", api_key=api_key or "none", timeout=timeout_s, max_retries=0)
    _ = client.chat.completions  # the SDK loads resources lazily: not inside the first timed request
    return client


def _usage_of(payload: dict[str, Any] | None, e2e_s: float) -> ColmUsage:
    colm = (payload or {}).get("colm")
    if not isinstance(colm, dict) or not isinstance(colm.get("usage"), dict):
        raise TurnError("ProtocolError", status=None, error_type="missing_colm_usage",
                        message="the response has no colm.usage object", e2e_s=e2e_s)
    return ColmUsage.model_validate(colm["usage"])


def run_turn(
    client: OpenAI,
    *,
    model: str,
    messages: list[dict[str, str]],
    max_tokens: int,
    stream: bool,
    colm: dict[str, Any],
) -> TurnResult:
    """Send one request and time it; raises TurnError for any failure."""
    body = {"model": model, "messages": messages, "max_tokens": max_tokens}
    extra = {"extra_body": {"colm": colm}} if colm else {}
    start = time.perf_counter()
    try:
        if stream:
            return _streamed(client, body=body, extra=extra, start=start)
        response = client.chat.completions.create(**body, **extra)
    except openai.OpenAIError as e:
        raise TurnError.from_openai(e, time.perf_counter() - start) from e
    e2e = time.perf_counter() - start
    usage = response.usage.completion_tokens if response.usage else None
    return TurnResult(answer=response.choices[0].message.content or "", e2e_s=e2e,
                      usage=_usage_of(response.model_extra, e2e), completion_tokens=usage)


def _streamed(client: OpenAI, *, body: dict[str, Any], extra: dict[str, Any], start: float) -> TurnResult:
    stream = client.chat.completions.create(**body, **extra, stream=True, stream_options={"include_usage": True})
    pieces: list[str] = []
    ttft: float | None = None
    colm_payload: dict[str, Any] | None = None
    completion_tokens: int | None = None
    with stream:
        for chunk in stream:
            text = chunk.choices[0].delta.content if chunk.choices else None
            if text and ttft is None:
                ttft = time.perf_counter() - start
            if text:
                pieces.append(text)
            if chunk.model_extra and "colm" in chunk.model_extra:
                colm_payload = chunk.model_extra
            if chunk.usage is not None:
                completion_tokens = chunk.usage.completion_tokens
    e2e = time.perf_counter() - start
    return TurnResult(answer="".join(pieces), e2e_s=e2e, ttft_s=ttft,
                      usage=_usage_of(colm_payload, e2e), completion_tokens=completion_tokens)
