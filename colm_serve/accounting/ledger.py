"""Per-client-app budgets and accounting, shared by every router replica.

The app builder runs one `Ledger` replica; all router replicas call it, so a key's
requests/min, server tokens/day and cost/day are enforced once, however many routers
there are. A collaboration is checked up front against an estimate of what it will cost
upstream: over budget it is refused (429) or degraded to fewer specialists, as configured.
"""

from __future__ import annotations

import time
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from colm_serve.config import BudgetConfig
from colm_serve.protocol import Usage

DAY_S = 86400


class Estimate(BaseModel):
    """What a request is expected to cost upstream, and what one specialist of it costs."""

    server_tokens: int = 0
    cost_usd: float = 0.0
    per_specialist_tokens: int = 0
    per_specialist_cost: float = 0.0
    specialists: int = 0


class Admission(BaseModel):
    ok: bool = True
    reason: str | None = None
    retry_after_s: float = 1.0
    max_specialists: int | None = None


@dataclass
class _Account:
    requests: int = 0
    usage: Usage = None  # type: ignore[assignment]
    day: int = -1
    day_tokens: int = 0
    day_cost: float = 0.0

    def __post_init__(self) -> None:
        self.usage = Usage()


class HandleLedger:
    """The shared Ledger deployment, called by every router replica."""

    def __init__(self, handle: Any) -> None:
        self._handle = handle

    async def admit(self, label: str, estimate: Any) -> Any:
        return await self._handle.admit.remote(label, estimate)

    async def record(self, label: str, usage: Any) -> None:
        await self._handle.record.remote(label, usage)

    async def stats(self) -> dict:
        return await self._handle.stats.remote()


class Ledger:
    def __init__(self, budgets: BudgetConfig | dict, *, clock: Callable[[], float] = time.time) -> None:
        self._cfg = BudgetConfig.model_validate(budgets)
        self._clock = clock
        self._accounts: dict[str, _Account] = defaultdict(_Account)
        self._recent: dict[str, deque[float]] = defaultdict(deque)

    async def admit(self, label: str, estimate: Estimate) -> Admission:
        now = self._clock()
        refused = self._rate(label, now)
        if refused:
            return refused
        acct = self._today(label, now)
        tokens_left = _left(self._cfg.server_tokens_per_day, acct.day_tokens)
        cost_left = _left(self._cfg.cost_usd_per_day, acct.day_cost)
        if estimate.server_tokens <= tokens_left and estimate.cost_usd <= cost_left:
            self._recent[label].append(now)
            return Admission()
        reason = self._over(acct, estimate)
        if self._cfg.on_exceed == "degrade" and estimate.specialists:
            fit = _fit(estimate, tokens_left, cost_left)
            self._recent[label].append(now)
            return Admission(reason=reason, max_specialists=fit)
        return Admission(ok=False, reason=reason, retry_after_s=DAY_S - now % DAY_S)

    async def record(self, label: str, usage: Usage) -> None:
        acct = self._today(label, self._clock())
        acct.requests += 1
        acct.usage = acct.usage + usage
        acct.day_tokens += usage.server_tokens
        acct.day_cost += usage.cost_usd

    async def stats(self) -> dict[str, dict]:
        return {
            label: {
                "requests": a.requests,
                "server_tokens": a.usage.server_tokens,
                "client_tokens": a.usage.client_tokens,
                "cost_usd": round(a.usage.cost_usd, 8),
                "server_tokens_today": a.day_tokens,
                "cost_usd_today": round(a.day_cost, 8),
            }
            for label, a in self._accounts.items()
        }

    def _rate(self, label: str, now: float) -> Admission | None:
        limit = self._cfg.requests_per_min
        window = self._recent[label]
        while window and window[0] <= now - 60:
            window.popleft()
        if limit is not None and len(window) >= limit:
            return Admission(ok=False, reason=f"requests_per_min: {limit} requests in the last minute",
                             retry_after_s=max(1.0, window[0] + 60 - now))
        return None

    def _today(self, label: str, now: float) -> _Account:
        acct = self._accounts[label]
        day = int(now // DAY_S)
        if acct.day != day:
            acct.day, acct.day_tokens, acct.day_cost = day, 0, 0.0
        return acct

    def _over(self, acct: _Account, est: Estimate) -> str:
        if self._cfg.server_tokens_per_day is not None and acct.day_tokens + est.server_tokens > self._cfg.server_tokens_per_day:
            return (f"server_tokens_per_day: {acct.day_tokens} of {self._cfg.server_tokens_per_day} used today; "
                    f"this request needs about {est.server_tokens}")
        return (f"cost_usd_per_day: ${acct.day_cost:.4f} of ${self._cfg.cost_usd_per_day} used today; "
                f"this request needs about ${est.cost_usd:.4f}")


def _left(limit: float | None, used: float) -> float:
    return float("inf") if limit is None else max(0.0, limit - used)


def _fit(est: Estimate, tokens_left: float, cost_left: float) -> int:
    """How many specialists the remaining budget pays for (0: the client model answers alone)."""
    fixed_tokens = est.server_tokens - est.per_specialist_tokens * est.specialists
    fixed_cost = est.cost_usd - est.per_specialist_cost * est.specialists
    by_tokens = (tokens_left - fixed_tokens) / est.per_specialist_tokens if est.per_specialist_tokens else est.specialists
    by_cost = (cost_left - fixed_cost) / est.per_specialist_cost if est.per_specialist_cost else est.specialists
    return int(max(0, min(est.specialists, by_tokens, by_cost)))
