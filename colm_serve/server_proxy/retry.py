"""The one retry loop in front of an upstream (the SDK's own retries are off).

Retries 408/409/429/5xx, dropped connections and timeouts with exponential backoff and full
jitter, honouring the upstream's Retry-After (seconds or HTTP date) up to the policy's
ceiling; any other 4xx fails at once. Every failure leaves as a domain error whose message
names the upstream status but never a key.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import random
import re
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Literal, TypeVar

import openai

from colm_serve.config import RetryPolicy
from colm_serve.deadline import Deadline
from colm_serve.errors import ColmError, DeadlineExceeded, UpstreamError
from colm_serve.protocol.usage import Usage
from colm_serve.server_proxy.breaker import CircuitBreaker

logger = logging.getLogger("colm_serve.server_proxy")
T = TypeVar("T")

RETRYABLE_STATUS = {408, 409, 429}
MAX_MESSAGE_CHARS = 300
_SECRETISH = re.compile(r"(sk-[A-Za-z0-9_*.-]{4,}|Bearer\s+\S+|key[-_][A-Za-z0-9]{8,})", re.IGNORECASE)


@dataclass(frozen=True)
class Failure:
    """What one failed attempt means for the retry loop and the breaker."""

    retryable: bool
    verdict: Literal["failure", "alive", "neutral"]  # what the breaker learns
    status: int | None
    retry_after_s: float | None
    message: str
    param: str | None = None  # the parameter an upstream's 4xx names


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After value: delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """Remove our own keys and anything shaped like a key from an upstream's words."""
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "***")
    return _SECRETISH.sub("***", text)[:MAX_MESSAGE_CHARS]


def classify(exc: BaseException, *, secrets: Iterable[str] = ()) -> Failure:
    if isinstance(exc, (openai.APITimeoutError, TimeoutError)):
        return Failure(True, "failure", None, None, "the upstream did not answer in time")
    if isinstance(exc, openai.APIConnectionError):
        return Failure(True, "failure", None, None, "the connection to the upstream failed")
    if isinstance(exc, openai.APIStatusError):
        return _classify_status(exc, secrets)
    return Failure(False, "neutral", None, None, f"the upstream's answer was not understood ({type(exc).__name__})")


def failure_kind(exc: BaseException, failure: Failure) -> str:
    """A failure's kind, as the breaker logs it."""
    if failure.status is not None:
        return f"http {failure.status}"
    return "timeout" if isinstance(exc, (openai.APITimeoutError, TimeoutError)) else "connection"


def _classify_status(exc: openai.APIStatusError, secrets: Iterable[str]) -> Failure:
    status = exc.status_code
    headers = exc.response.headers
    retry_after = parse_retry_after(headers.get("retry-after"))
    if retry_after is None and headers.get("retry-after-ms"):
        retry_after = (parse_retry_after(headers.get("retry-after-ms")) or 0.0) / 1000
    body = exc.body if isinstance(exc.body, dict) else {}
    detail = redact(str(body.get("message") or exc.message), secrets)
    message = f"upstream answered {status}: {detail}"
    if status >= 500:
        return Failure(True, "failure", status, retry_after, message)
    if status == 429:
        return Failure(True, "neutral", status, retry_after, message)
    param = body.get("param") if isinstance(body.get("param"), str) else None
    return Failure(status in RETRYABLE_STATUS, "alive", status, retry_after, message, param)


def backoff_s(policy: RetryPolicy, retry: int, *, rng: random.Random) -> float:
    """Full jitter: uniform in [0, min(max, base * 2**retry)]."""
    return rng.uniform(0.0, min(policy.backoff_max_s, policy.backoff_base_s * 2**retry))


def _upstream_error(failure: Failure, attempts: int) -> UpstreamError:
    code = f"upstream_{failure.status}" if failure.status else "upstream_unreachable"
    tail = f" (after {attempts} attempts)" if attempts > 1 else ""
    return UpstreamError(failure.message + tail, code=code, param=failure.param)


@dataclass
class AttemptMeter:
    """Spend of attempts that brought back no answer but were most likely billed all the same.

    An attempt that timed out, or that we abandoned (deadline, cancellation) after it was
    sent, was probably run to its end by the provider, which bills for it: it is counted at
    its estimate (the prompt plus the whole output cap), marked as estimated. The proxy calls
    `sent()` just before a request goes out, so waiting for a rate limit costs nothing.
    """

    estimate: Callable[[], Usage] = Usage
    lost: Usage = field(default_factory=Usage)
    in_flight: bool = False

    def sent(self) -> None:
        self.in_flight = True

    def ended(self, *, billed: bool) -> None:
        if self.in_flight and billed:
            self.lost = self.lost + self.estimate()
        self.in_flight = False


@dataclass
class RetryLoop:
    policy: RetryPolicy
    breaker: CircuitBreaker
    server: str = ""
    secrets: tuple[str, ...] = ()
    rng: random.Random = field(default_factory=random.Random)

    async def run(
        self, attempt: Callable[[int], Awaitable[T]], *, deadline: Deadline, meter: AttemptMeter | None = None
    ) -> tuple[T, int]:
        """Run `attempt(n)` until it succeeds; returns its result and the attempts made. The
        error that ends it carries (`billed`) what its lost attempts cost, as `meter` has it."""
        meter = meter or AttemptMeter()
        try:
            return await self._attempts(attempt, deadline, meter)
        except ColmError as err:
            if meter.lost.server_tokens:
                err.billed = meter.lost if err.billed is None else err.billed + meter.lost
            raise

    async def _attempts(self, attempt: Callable[[int], Awaitable[T]], deadline: Deadline, meter: AttemptMeter) -> tuple[T, int]:
        for n in range(1, self.policy.max_attempts + 1):
            deadline.check("calling the upstream")
            self.breaker.acquire()
            try:
                result = await attempt(n)
            except (openai.APIError, TimeoutError) as exc:
                meter.ended(billed=isinstance(exc, (openai.APITimeoutError, TimeoutError)) or deadline.expired())
                failure = self._judge(exc, deadline)
                self._give_up_if_final(failure, n)
                await self._backoff(failure, n, deadline)
                continue
            except BaseException:
                meter.ended(billed=True)  # cancelled after it was sent: the provider goes on
                self.breaker.release()
                raise
            meter.ended(billed=False)  # its usage comes with the answer
            self.breaker.success()
            return result, n
        raise AssertionError("unreachable: the last attempt raises")

    def _judge(self, exc: BaseException, deadline: Deadline) -> Failure:
        failure = classify(exc, secrets=self.secrets)
        if deadline.expired():  # our deadline cut the attempt short: no verdict on the server
            self.breaker.release()
            raise DeadlineExceeded("deadline passed while calling the upstream", code="deadline_exceeded") from None
        if failure.verdict == "failure":
            self.breaker.failure(failure_kind(exc, failure))
        else:
            {"alive": self.breaker.success, "neutral": self.breaker.release}[failure.verdict]()
        return failure

    def _give_up_if_final(self, failure: Failure, n: int) -> None:
        if not failure.retryable or n >= self.policy.max_attempts:
            raise _upstream_error(failure, n)
        if failure.retry_after_s is not None and failure.retry_after_s > self.policy.max_retry_after_s:
            raise _upstream_error(failure, n)  # the upstream asked for longer than we will hold a call

    async def _backoff(self, failure: Failure, n: int, deadline: Deadline) -> None:
        wait = failure.retry_after_s
        if wait is None:
            wait = backoff_s(self.policy, n - 1, rng=self.rng)
        left = deadline.remaining()
        if left is not None and wait >= left:
            raise DeadlineExceeded(
                f"{failure.message}; the next retry would come after the deadline", code="deadline_exceeded"
            )
        logger.info("server %s: retrying in %.2fs: %s", self.server, wait, failure.message)
        await asyncio.sleep(wait)


