"""Circuit breaker for one upstream server.

closed -> open when, within `window_s`, at least `failure_threshold` attempts failed AND they
are at least `min_failure_rate` of the attempts that ended there. A count alone would open on
a busy, healthy server: at 500 calls a second, five dropped keep-alive connections in 30 s are
0.03% of its calls. Open answers ServiceUnavailable at once; after `reset_timeout_s` one probe
may go (half-open); its success closes the breaker, its failure re-opens it. Only server
failures count (5xx, timeouts, dropped connections); a 4xx proves the server alive, a 429
decides nothing. Opening logs the failures that counted, by kind.
"""

from __future__ import annotations

import logging
import math
import time
from collections import Counter, deque
from collections.abc import Callable

from colm_serve.config import BreakerConfig
from colm_serve.errors import ServiceUnavailable

logger = logging.getLogger("colm_serve.server_proxy")
CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"


class _Window:
    """Attempts that ended within the last `span_s`: successes counted per second (a busy
    server ends thousands), failures kept one by one with their kind (there are few)."""

    def __init__(self, span_s: float) -> None:
        self._span = span_s
        self._ok: deque[list[float]] = deque()  # [second, successes]
        self.failures: deque[tuple[float, str]] = deque()

    def success(self, now: float) -> None:
        second = math.floor(now)
        if self._ok and self._ok[-1][0] == second:
            self._ok[-1][1] += 1
        else:
            self._ok.append([second, 1])
        self._trim(now)

    def failure(self, now: float, kind: str) -> None:
        self.failures.append((now, kind))
        self._trim(now)

    def successes(self) -> int:
        return int(sum(count for _, count in self._ok))

    def clear(self) -> None:
        self._ok.clear()
        self.failures.clear()

    def _trim(self, now: float) -> None:
        while self._ok and now - self._ok[0][0] > self._span:
            self._ok.popleft()
        while self.failures and now - self.failures[0][0] > self._span:
            self.failures.popleft()


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
        self._window = _Window(config.window_s)
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
            self._window.clear()
            self._changed()
            return
        self._window.success(self._clock())

    def failure(self, kind: str = "failure") -> None:
        """`kind` names the failure in the log: timeout, connection, 5xx status, stream."""
        now = self._clock()
        if self._opened_at is not None:
            if self._probing:  # the probe failed: open for another reset period
                self._opened_at, self._probing = now, False
                logger.warning("server %s: the half-open probe failed (%s)", self._server, kind)
                self._changed()
            return
        self._window.failure(now, kind)
        failed, succeeded = len(self._window.failures), self._window.successes()
        if failed >= self._config.failure_threshold and failed / (failed + succeeded) >= self._config.min_failure_rate:
            kinds = Counter(k for _, k in self._window.failures)
            logger.warning("server %s: opening the circuit breaker: %d of %d attempts in the last %.0f s failed (%s)",
                           self._server, failed, failed + succeeded, self._config.window_s,
                           ", ".join(f"{k} x{n}" for k, n in kinds.most_common()))
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
