"""Requests-per-minute and tokens-per-minute token buckets.

A caller waits exactly until its tokens are there (computed from the refill rate), never a
guessed sleep; when that wait would outlive the call's deadline it fails at once instead.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from colm_serve.deadline import Deadline
from colm_serve.errors import DeadlineExceeded
from colm_serve.server_proxy.types import UpstreamCall

BURST_S = 10.0  # a full bucket holds 10 s of rate: bursts pass, a minute's worth at once does not
CHARS_PER_TOKEN = 4
TOKENS_PER_MESSAGE = 4
TOKENS_PER_NON_TEXT_PART = 256  # images and the like: a flat guess, settled from usage later


class TokenBucket:
    def __init__(
        self, per_minute: int, *, clock: Callable[[], float] = time.monotonic, burst_s: float = BURST_S
    ) -> None:
        self.rate = per_minute / 60.0
        self.capacity = max(1.0, self.rate * burst_s)
        self._clock = clock
        self._level = self.capacity
        self._stamp = clock()
        self._lock = asyncio.Lock()  # FIFO: waiters are served in arrival order

    def level(self) -> float:
        self._refill()
        return self._level

    def _refill(self) -> None:
        now = self._clock()
        self._level = min(self.capacity, self._level + (now - self._stamp) * self.rate)
        self._stamp = now

    async def take(self, amount: float, deadline: Deadline) -> None:
        amount = min(amount, self.capacity)  # a call bigger than the bucket waits for a full one
        async with self._lock:
            while True:
                self._refill()
                if self._level >= amount:
                    self._level -= amount
                    return
                wait = (amount - self._level) / self.rate
                left = deadline.remaining()
                if left is not None and wait > left:
                    raise DeadlineExceeded(
                        f"rate limit needs {wait:.1f}s of waiting, beyond the deadline", code="deadline_exceeded"
                    )
                await asyncio.sleep(wait)

    def adjust(self, delta: float) -> None:
        """Charge (positive) or refund (negative) tokens; debt is allowed and repaid by waiting."""
        self._refill()
        self._level = min(self.capacity, self._level - delta)


class RateLimits:
    """The server's rpm and tpm buckets; either may be absent (no limit)."""

    def __init__(self, *, rpm: int | None, tpm: int | None, clock: Callable[[], float] = time.monotonic) -> None:
        self.rpm = TokenBucket(rpm, clock=clock) if rpm else None
        self.tpm = TokenBucket(tpm, clock=clock) if tpm else None

    async def acquire(self, tokens: int, deadline: Deadline) -> None:
        if self.rpm:
            await self.rpm.take(1, deadline)
        if self.tpm:
            try:
                await self.tpm.take(tokens, deadline)
            except BaseException:
                if self.rpm:
                    self.rpm.adjust(-1)  # the request was never sent
                raise

    def settle(self, *, estimated: int, actual: int) -> None:
        """Correct the up-front tpm estimate with the usage the upstream reported."""
        if self.tpm:
            self.tpm.adjust(actual - estimated)


def estimate_tokens(call: UpstreamCall) -> int:
    """Prompt tokens guessed from the text, plus the completion budget: what tpm must cover."""
    return message_tokens(call.messages) + call.output_bound()


def message_tokens(messages: list[dict]) -> int:
    """Prompt tokens guessed from chat messages' text (4 characters a token), images at a flat rate."""
    prompt = 0
    for message in messages:
        prompt += TOKENS_PER_MESSAGE
        content = message.get("content")
        if isinstance(content, str):
            prompt += len(content) // CHARS_PER_TOKEN
            continue
        for part in content or []:
            text = part.get("text") if isinstance(part, dict) else None
            prompt += len(text) // CHARS_PER_TOKEN if isinstance(text, str) else TOKENS_PER_NON_TEXT_PART
    return prompt
