"""The budget store interface: where every router replica's ledger keeps the shared counters.

A store does two things, each atomically over every replica that shares it: `reserve`
checks a key's budgets and, if the request fits, holds its estimate (and counts it in the
requests/min window); `settle` releases a reservation and adds what the request really
spent. Today's budget check is `spent today + outstanding reservations + this estimate <=
limit`, so concurrent admissions cannot together overrun a budget that each alone fits.

A reservation that is never settled (its replica crashed) keeps counting against its day
until the day ends: the budget stays conservative (it may refuse a little early) and never
overruns. Memory, sqlite and Redis implement the same rules; the pure checks below are
shared by the Python stores and mirrored by the Redis Lua scripts.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict

from colm_serve.config import BudgetConfig
from colm_serve.protocol.usage import Usage

if TYPE_CHECKING:
    from colm_serve.config import AccountingConfig

DAY_S = 86400
RATE_WINDOW_S = 60.0
# The all-time counters of a key, in the order of a stats row.
TOTAL_FIELDS = ("requests", "server_tokens", "client_tokens", "cost_usd", "baseline_cost_usd", "saving_usd")
COST_FIELDS = {"cost_usd", "baseline_cost_usd", "saving_usd", "cost_usd_today"}


class Amounts(BaseModel):
    """What a reservation holds against today's budgets."""

    model_config = ConfigDict(frozen=True)

    server_tokens: int = 0
    cost_usd: float = 0.0

    def is_zero(self) -> bool:
        return self.server_tokens <= 0 and self.cost_usd <= 0


class Reservation(BaseModel):
    """A granted reservation: `settle` releases exactly these amounts from day `day`."""

    model_config = ConfigDict(frozen=True)

    id: str
    label: str
    day: int
    server_tokens: int = 0
    cost_usd: float = 0.0


class DayUse(BaseModel):
    """One key's figures for one UTC day: settled spend and outstanding reservations."""

    server_tokens: int = 0
    cost_usd: float = 0.0
    reserved_tokens: int = 0
    reserved_cost: float = 0.0


LimitName = Literal["requests_per_min", "server_tokens_per_day", "cost_usd_per_day"]


class Refusal(BaseModel):
    """Why a reservation was refused; `today` lets the ledger work out what still fits."""

    limit: LimitName
    retry_after_s: float
    today: DayUse = DayUse()


class Settlement(BaseModel):
    """One request's end: release `reservation` (if any) and add `usage` to day(`now`)."""

    reservation: Reservation | None = None
    label: str
    usage: Usage
    now: float
    requests: int = 1


class BudgetStore(ABC):
    """Shared counters behind `Ledger`; every method is one atomic step over all replicas."""

    @classmethod
    @abstractmethod
    def from_config(cls, config: AccountingConfig) -> BudgetStore:
        """The store an `AccountingConfig` names, built without touching the backend yet."""

    @abstractmethod
    async def reserve(self, *, label: str, amounts: Amounts, limits: BudgetConfig, now: float) -> Reservation | Refusal:
        """Check `label`'s limits at `now` and, if `amounts` fit, hold them and count the request."""

    @abstractmethod
    async def settle(self, batch: Sequence[Settlement]) -> None:
        """Apply every settlement of `batch`: in one transaction, or on a Redis Cluster in one
        per slot. Releasing is by reservation id, so a reservation released twice is released once."""

    @abstractmethod
    async def stats(self, *, now: float) -> dict[str, dict]:
        """Per-key rows: the all-time TOTAL_FIELDS and today's server tokens and cost."""

    async def aclose(self) -> None:
        """Release connections; safe to call twice."""


def day_of(now: float) -> int:
    return int(now // DAY_S)


def until_tomorrow(now: float) -> float:
    return DAY_S - now % DAY_S


def rate_refusal(*, count: int, oldest: float | None, limits: BudgetConfig, now: float) -> Refusal | None:
    """Refuse when `count` requests were admitted in the last minute and that is the limit."""
    limit = limits.requests_per_min
    if limit is None or count < limit:
        return None
    retry = RATE_WINDOW_S if oldest is None else oldest + RATE_WINDOW_S - now
    return Refusal(limit="requests_per_min", retry_after_s=max(1.0, retry))


def day_refusal(*, today: DayUse, amounts: Amounts, limits: BudgetConfig, now: float) -> Refusal | None:
    """Refuse when spent + reserved + this request exceeds a daily limit. A request that
    needs nothing of a budget always fits it, even a spent one (the client model alone)."""
    tokens, cost = limits.server_tokens_per_day, limits.cost_usd_per_day
    if tokens is not None and amounts.server_tokens > 0 and \
            today.server_tokens + today.reserved_tokens + amounts.server_tokens > tokens:
        return Refusal(limit="server_tokens_per_day", retry_after_s=until_tomorrow(now), today=today)
    if cost is not None and amounts.cost_usd > 0 and today.cost_usd + today.reserved_cost + amounts.cost_usd > cost:
        return Refusal(limit="cost_usd_per_day", retry_after_s=until_tomorrow(now), today=today)
    return None


def increments(item: Settlement) -> dict[str, float]:
    """What one settlement adds to its key's all-time counters (TOTAL_FIELDS)."""
    u = item.usage
    return {
        "requests": item.requests,
        "server_tokens": u.server_tokens,
        "client_tokens": u.client_tokens,
        "cost_usd": u.cost_usd,
        "baseline_cost_usd": u.baseline_cost_usd or 0.0,
        "saving_usd": u.saving_usd or 0.0,
    }


def stats_row(totals: Mapping[str, float | str | None], today: DayUse | None) -> dict:
    """A stats row from stored counters (missing ones are 0): ints as ints, costs rounded."""
    today = today or DayUse()
    raw = {**{f: totals.get(f) or 0 for f in TOTAL_FIELDS},
           "server_tokens_today": today.server_tokens, "cost_usd_today": today.cost_usd}
    return {f: round(float(v), 8) if f in COST_FIELDS else int(float(v)) for f, v in raw.items()}
