"""Chat completions at an OpenAI-compatible endpoint, with retries and per-call accounting.

Every reply carries its latency, its token counts and, when the endpoint is the CoLM router,
the `colm.usage` object (server tokens and cost), so cost is recorded beside quality.
The output budget is fitted into the model's context (see `context.py`), and a judge's
verdict format is sent as a vLLM structured-outputs constraint when asked for.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import openai
from pydantic import BaseModel, Field

from clients.eval.config import Endpoint, RetryPolicy
from clients.eval.context import ContextWindow, context_overflow
from clients.eval.verdicts import VerdictFormat
from colm_serve.protocol.usage import Usage

logger = logging.getLogger("clients.eval")

_RETRY_STATUS = {408, 409, 429}


class Reply(BaseModel):
    """One completion and what it cost."""

    text: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_s: float = 0.0
    finish_reason: str | None = None
    max_tokens: int = Field(0, description="The output budget sent, after fitting it into the context.")
    colm: Usage | None = None

    @property
    def cut_off(self) -> bool:
        return self.finish_reason == "length"


def is_transient(exc: BaseException) -> bool:
    """Failures worth another attempt: the network, timeouts, overload and server errors."""
    if isinstance(exc, (openai.APIConnectionError, openai.APITimeoutError)):
        return True
    if isinstance(exc, openai.APIStatusError):
        return exc.status_code in _RETRY_STATUS or exc.status_code >= 500
    return False


def retry_delay(exc: BaseException, attempt: int, policy: RetryPolicy) -> float:
    """Honour the server's Retry-After when it sends one, else back off exponentially."""
    response = getattr(exc, "response", None)
    header = response.headers.get("retry-after") if response is not None else None
    if header is not None:
        try:
            return min(max(float(header), 0.0), policy.max_retry_after_s)
        except ValueError:
            pass
    return min(policy.backoff_base_s * 2 ** (attempt - 1), policy.backoff_max_s)


class ChatClient:
    """Thin async wrapper over the official SDK; the SDK's own retries are off so ours are visible."""

    def __init__(self, endpoint: Endpoint, *, window: ContextWindow | None = None) -> None:
        self.endpoint = endpoint
        self.window = window or ContextWindow(model=endpoint.model)
        self._sdk = openai.AsyncOpenAI(
            base_url=endpoint.base_url, api_key=endpoint.api_key, timeout=endpoint.timeout_s, max_retries=0
        )

    async def close(self) -> None:
        await self._sdk.close()

    async def complete(self, messages: list[dict[str, Any]], *, max_tokens: int, temperature: float,
                       verdict: VerdictFormat | None = None) -> Reply:
        """One completion, its budget fitted into the context; a context-length 400 is answered once,
        by resending with the room the server named. `verdict` constrains the output to it."""
        budget = self.window.fit(messages, max_tokens)
        try:
            return await self._retrying(messages, max_tokens=budget, temperature=temperature, verdict=verdict)
        except openai.BadRequestError as exc:
            overflow = context_overflow(exc)
            if overflow is None:
                raise
            budget = self.window.settle(overflow, messages, budget)
        return await self._retrying(messages, max_tokens=budget, temperature=temperature, verdict=verdict)

    async def _retrying(self, messages: list[dict[str, Any]], *, max_tokens: int, temperature: float,
                        verdict: VerdictFormat | None) -> Reply:
        """Transient failures (connection, timeout, 408/409/429/5xx) are retried with backoff."""
        policy = self.endpoint.retry
        for attempt in range(1, policy.max_attempts + 1):
            try:
                return await self._once(messages, max_tokens=max_tokens, temperature=temperature, verdict=verdict)
            except openai.OpenAIError as exc:
                if not is_transient(exc) or attempt == policy.max_attempts:
                    raise
                delay = retry_delay(exc, attempt, policy)
                logger.warning("%s: %s (attempt %d/%d), retrying in %.1fs", self.endpoint.model,
                               type(exc).__name__, attempt, policy.max_attempts, delay)
                await asyncio.sleep(delay)
        raise AssertionError("unreachable: the loop returns or raises")

    async def _once(self, messages: list[dict[str, Any]], *, max_tokens: int, temperature: float,
                    verdict: VerdictFormat | None) -> Reply:
        extra = {**self.endpoint.extra_body, **(verdict.extra_body(max_tokens) if verdict else {})}
        started = time.perf_counter()
        resp = await self._sdk.chat.completions.create(
            model=self.endpoint.model, messages=messages, max_tokens=max_tokens, temperature=temperature,
            extra_body=extra or None,
        )
        latency = time.perf_counter() - started
        if not resp.choices:
            raise ValueError(f"{self.endpoint.model}: the response has no choices")
        choice = resp.choices[0]
        colm = (resp.model_extra or {}).get("colm") or {}
        return Reply(
            text=choice.message.content or "",
            prompt_tokens=resp.usage.prompt_tokens if resp.usage else 0,
            completion_tokens=resp.usage.completion_tokens if resp.usage else 0,
            latency_s=round(latency, 4),
            finish_reason=choice.finish_reason,
            max_tokens=max_tokens,
            colm=Usage.model_validate(colm["usage"]) if "usage" in colm else None,
        )
