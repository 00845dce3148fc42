"""Per-client-app budgets and accounting, in process in every router replica.

Every replica has its own `Ledger` over one shared `BudgetStore` (sqlite on one node, Redis
on a cluster), so a key's requests/min, server tokens/day and cost/day hold however many
replicas there are, and survive their restarts. A request is admitted against an estimate
of what it will cost upstream, and the estimate is *reserved* in the same atomic step, so
concurrent requests cannot together overrun a budget; over budget it is refused (429) or
degraded to fewer specialists, as configured. When the request ends, however it ends,
`settle` releases the reservation and records what was really spent.

Settling is write-behind where that is safe (see `Ledger.settle`); reserving is not. A
reservation never settled (its replica crashed) counts against its day until the day ends:
budgets err on the side of refusing, never of overrunning.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from pydantic import BaseModel

from colm_serve.accounting.stores.base import (
    Amounts,
    BudgetStore,
    DayUse,
    Refusal,
    Reservation,
    Settlement,
    day_of,
)
from colm_serve.accounting.writer import SettleWriter
from colm_serve.config import AccountingConfig, BudgetConfig
from colm_serve.protocol.usage import Usage


class Estimate(BaseModel):
    """What a request is expected to cost upstream, and what one specialist of it costs."""

    server_tokens: int = 0
    cost_usd: float = 0.0
    per_specialist_tokens: int = 0
    per_specialist_cost: float = 0.0
    specialists: int = 0


class Admission(BaseModel):
    """The ledger's answer; an admitted request passes it back to `Ledger.settle`."""

    label: str
    ok: bool = True
    reason: str | None = None
    retry_after_s: float = 1.0
    max_specialists: int | None = None
    reservation: Reservation | None = None


class Ledger:
    """One per router replica, in process, over the store every replica shares."""

    def __init__(self, budgets: BudgetConfig | dict, store: BudgetStore, *, clock: Callable[[], float] = time.time) -> None:
        self._cfg = BudgetConfig.model_validate(budgets)
        self._store = store
        self._clock = clock
        self._writer = SettleWriter(store)
        self._day_limited = self._cfg.server_tokens_per_day is not None or self._cfg.cost_usd_per_day is not None

    async def admit(self, label: str, estimate: Estimate) -> Admission:
        """Admit `label`'s request and reserve `estimate` in one atomic step, or refuse it
        (429 with Retry-After), or with `on_exceed: degrade` reserve fewer specialists."""
        need = Amounts(server_tokens=estimate.server_tokens, cost_usd=estimate.cost_usd)
        if not self._may_refuse(need):
            return Admission(label=label)
        now = self._clock()
        got = await self._store.reserve(label=label, amounts=need, limits=self._cfg, now=now)
        if isinstance(got, Reservation):
            return Admission(label=label, reservation=got)
        reason = self._reason(got, need)
        if got.limit == "requests_per_min" or self._cfg.on_exceed == "refuse" or not estimate.specialists:
            return Admission(label=label, ok=False, reason=reason, retry_after_s=got.retry_after_s)
        return await self._degrade(label, estimate, got, reason=reason, now=now)

    async def settle(self, admission: Admission, usage: Usage) -> None:
        """End an admitted request, whatever its end (answer, error, cancellation): release
        its reservation and record `usage`, its actual spend. Call it once per admission.

        Write-behind when that is safe: when the store, until the write lands, counts at
        least what was spent, i.e. no daily limit is configured, or the spend is within the
        reservation the store still holds. Otherwise (the estimate fell short, or there was
        none) it waits for the write, so the next admission sees the overrun. It queues
        before any await, so a settle in a cancelled request's `finally` is never lost.
        """
        if not admission.ok:
            raise ValueError("settle is for admitted requests; a refused one never started")
        await self._write(Settlement(reservation=admission.reservation, label=admission.label, usage=usage, now=self._clock()))

    async def record(self, label: str, usage: Usage, *, request: bool = True) -> None:
        """Record spend that has no reservation, e.g. an upstream attempt whose caller never
        heard the outcome (`request=False`: it adds to the bill, not to the request count)."""
        await self._write(Settlement(label=label, usage=usage, now=self._clock(), requests=int(request)))

    async def stats(self) -> dict[str, dict]:
        """Per-key rows (all-time and today), everything settled so far included."""
        await self.flush()
        return await self._store.stats(now=self._clock())

    async def flush(self) -> None:
        """Wait until every settlement queued so far is written (raises if a write failed)."""
        await self._writer.flush()

    async def aclose(self) -> None:
        """Write the queue and close the store; call it when the replica shuts down."""
        try:
            await self._writer.aclose()
        finally:
            await self._store.aclose()

    def _may_refuse(self, need: Amounts) -> bool:
        """Whether the store must be asked: with no limit, or only daily ones and a request
        that needs none of them (the client model alone), nothing can refuse, so the hot path
        makes no round trip."""
        return self._cfg.requests_per_min is not None or (self._day_limited and not need.is_zero())

    async def _write(self, item: Settlement) -> None:
        written = self._writer.submit(item)  # queued before any await
        if not self._deferrable(item.reservation, item.usage, now=item.now):
            await asyncio.shield(written)  # a cancelled wait leaves the write to the writer

    def _deferrable(self, held: Reservation | None, usage: Usage, *, now: float) -> bool:
        if not self._day_limited:
            return True
        if held is None or held.day != day_of(now):
            return usage.server_tokens == 0 and usage.cost_usd == 0
        return ((self._cfg.server_tokens_per_day is None or usage.server_tokens <= held.server_tokens)
                and (self._cfg.cost_usd_per_day is None or usage.cost_usd <= held.cost_usd))

    async def _degrade(self, label: str, est: Estimate, refusal: Refusal, *, reason: str, now: float) -> Admission:
        """Reserve as many specialists as the rest of today's budget pays for, down to none
        (the client model answers alone). Another replica may take the room between two
        tries, so each refusal refits from the store's fresh figures, one specialist fewer at
        least: the loop ends, at the latest at none, which needs no budget."""
        fit = est.specialists
        while True:
            fit = min(fit - 1, _fit(est, *self._left(refusal.today)))
            need = Amounts(server_tokens=est.server_tokens - est.per_specialist_tokens * (est.specialists - fit),
                           cost_usd=est.cost_usd - est.per_specialist_cost * (est.specialists - fit)) if fit else Amounts()
            if not self._may_refuse(need):
                return Admission(label=label, reason=reason, max_specialists=fit)
            got = await self._store.reserve(label=label, amounts=need, limits=self._cfg, now=now)
            if isinstance(got, Reservation):
                return Admission(label=label, reason=reason, max_specialists=fit, reservation=got)
            if got.limit == "requests_per_min":
                return Admission(label=label, ok=False, reason=self._reason(got, need), retry_after_s=got.retry_after_s)
            refusal = got

    def _left(self, today: DayUse) -> tuple[float, float]:
        tokens, cost = self._cfg.server_tokens_per_day, self._cfg.cost_usd_per_day
        return (float("inf") if tokens is None else max(0.0, tokens - today.server_tokens - today.reserved_tokens),
                float("inf") if cost is None else max(0.0, cost - today.cost_usd - today.reserved_cost))

    def _reason(self, refusal: Refusal, need: Amounts) -> str:
        today = refusal.today
        if refusal.limit == "requests_per_min":
            return f"requests_per_min: {self._cfg.requests_per_min} requests in the last minute"
        if refusal.limit == "server_tokens_per_day":
            held = f", {today.reserved_tokens} reserved by requests in flight" if today.reserved_tokens else ""
            return (f"server_tokens_per_day: {today.server_tokens} of {self._cfg.server_tokens_per_day} used today{held}; "
                    f"this request needs about {need.server_tokens}")
        held = f", ${today.reserved_cost:.4f} reserved by requests in flight" if today.reserved_cost > 1e-9 else ""
        return (f"cost_usd_per_day: ${today.cost_usd:.4f} of ${self._cfg.cost_usd_per_day} used today{held}; "
                f"this request needs about ${need.cost_usd:.4f}")


def _fit(est: Estimate, tokens_left: float, cost_left: float) -> int:
    """How many specialists the remaining budget pays for (0: the client model answers alone)."""
    fixed_tokens = est.server_tokens - est.per_specialist_tokens * est.specialists
    fixed_cost = est.cost_usd - est.per_specialist_cost * est.specialists
    by_tokens = (tokens_left - fixed_tokens) / est.per_specialist_tokens if est.per_specialist_tokens else est.specialists
    by_cost = (cost_left - fixed_cost) / est.per_specialist_cost if est.per_specialist_cost else est.specialists
    return int(max(0, min(est.specialists, by_tokens, by_cost)))


class SpendRecorder:
    """A recorder, over the shared store, for spend no request will settle: a ServerProxy's
    attempts whose callers all left. It records; it enforces nothing."""

    def __init__(self, accounting: AccountingConfig | dict) -> None:
        from colm_serve.accounting.stores import build_store

        self._ledger = Ledger(BudgetConfig(), build_store(AccountingConfig.model_validate(accounting)))

    async def __call__(self, label: str, usage: Usage) -> None:
        await self._ledger.record(label, usage, request=False)

    async def aclose(self) -> None:
        """Writes what is queued and closes the store (the proxy's own close calls it)."""
        await self._ledger.aclose()
