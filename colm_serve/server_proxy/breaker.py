"""Circuit breaker for one upstream server.

closed -> open after `failure_threshold` server failures within `window_s`; open answers
ServiceUnavailable at once; after `reset_timeout_s` one probe may go (half-open); its
success closes the breaker, its failure re-opens it. Only server failures count (5xx,
timeouts, dropped connections); a 4xx proves the server alive, a 429 decides nothing.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

from colm_serve.config import BreakerConfig
from colm_serve.errors import ServiceUnavailable

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"


class CircuitBreaker:
    def __init__(
        self,
        config: BreakerConfig,
        *,
        server: str,
        clock: Callable[[], float] = time.monotonic,
        on_change: Callable[[str], None] | None = None,
    ) -> None:
        self._config = config
        self._server = server
        self._clock = clock
        self._on_change = on_change
        self._failures: deque[float] = deque()
        self._opened_at: float | None = None
        self._probing = False

    @property
    def state(self) -> str:
        if self._opened_at is None:
            return CLOSED
        if self._probing or self._clock() - self._opened_at >= self._config.reset_timeout_s:
            return HALF_OPEN
        return OPEN

    def check(self) -> None:
        """Fail fast when no call could go now; claims nothing."""
        state = self.state
        if state == OPEN or (state == HALF_OPEN and self._probing):
            raise self._refusal()

    def acquire(self) -> None:
        """Permission for one upstream attempt; in half-open this claims the single probe."""
        self.check()
        if self.state == HALF_OPEN:
            self._probing = True

    def success(self) -> None:
        if self._opened_at is not None:
            self._opened_at, self._probing = None, False
            self._failures.clear()
            self._changed()

    def failure(self) -> None:
        now = self._clock()
        if self._opened_at is not None:
            if self._probing:  # the probe failed: open for another reset period
                self._opened_at, self._probing = now, False
                self._changed()
            return
        self._failures.append(now)
        while self._failures and now - self._failures[0] > self._config.window_s:
            self._failures.popleft()
        if len(self._failures) >= self._config.failure_threshold:
            self._opened_at = now
            self._changed()

    def release(self) -> None:
        """An attempt ended with no verdict on the server (cancelled, 429): free the probe."""
        self._probing = False

    def retry_after_s(self) -> float:
        if self._opened_at is None:
            return 1.0
        return max(1.0, self._config.reset_timeout_s - (self._clock() - self._opened_at))

    def _refusal(self) -> ServiceUnavailable:
        return ServiceUnavailable(
            f"server {self._server!r} is failing; its circuit breaker is open",
            code="circuit_open",
            headers={"Retry-After": str(max(1, round(self.retry_after_s())))},
        )

    def _changed(self) -> None:
        if self._on_change:
            self._on_change(self.state)
