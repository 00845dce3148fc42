"""The in-process store: for tests and single-process runs; a restart forgets everything.

Each method runs without awaiting, so on one event loop it is atomic by construction.
"""

from __future__ import annotations

import uuid
from collections import defaultdict, deque
from collections.abc import Sequence

from colm_serve.accounting.stores import base
from colm_serve.config import AccountingConfig, BudgetConfig


class MemoryStore(base.BudgetStore):
    def __init__(self) -> None:
        self._totals: dict[str, dict[str, float]] = defaultdict(lambda: dict.fromkeys(base.TOTAL_FIELDS, 0))
        self._days: dict[tuple[str, int], base.DayUse] = defaultdict(base.DayUse)
        self._reservations: dict[str, base.Reservation] = {}
        self._admitted: dict[str, deque[float]] = defaultdict(deque)

    @classmethod
    def from_config(cls, config: AccountingConfig) -> MemoryStore:
        return cls()

    async def reserve(self, *, label: str, amounts: base.Amounts, limits: BudgetConfig, now: float) -> base.Reservation | base.Refusal:
        window = self._admitted[label]
        while window and window[0] <= now - base.RATE_WINDOW_S:
            window.popleft()
        today = self._days[(label, base.day_of(now))]
        refusal = base.rate_refusal(count=len(window), oldest=window[0] if window else None, limits=limits, now=now) \
            or base.day_refusal(today=today, amounts=amounts, limits=limits, now=now)
        if refusal:
            return refusal
        if limits.requests_per_min is not None:
            window.append(now)
        held = base.Reservation(id=uuid.uuid4().hex, label=label, day=base.day_of(now), **amounts.model_dump())
        if not amounts.is_zero():
            today.reserved_tokens += held.server_tokens
            today.reserved_cost += held.cost_usd
            self._reservations[held.id] = held
        return held

    async def settle(self, batch: Sequence[base.Settlement]) -> None:
        for item in batch:
            held = self._reservations.pop(item.reservation.id, None) if item.reservation else None
            if held:
                day = self._days[(held.label, held.day)]
                day.reserved_tokens -= held.server_tokens
                day.reserved_cost -= held.cost_usd
            today = self._days[(item.label, base.day_of(item.now))]
            today.server_tokens += item.usage.server_tokens
            today.cost_usd += item.usage.cost_usd
            totals = self._totals[item.label]
            for field, value in base.increments(item).items():
                totals[field] += value

    async def stats(self, *, now: float) -> dict[str, dict]:
        day = base.day_of(now)
        return {label: base.stats_row(totals, self._days.get((label, day))) for label, totals in self._totals.items()}
