"""Stored responses in one process's memory (tests, single-process runs); expired ones are
dropped as they are met."""

from __future__ import annotations

import time

from colm_serve.accounting.conversations.base import ResponseStore, StoredResponse
from colm_serve.accounting.stores.base import BudgetStore
from colm_serve.config import AccountingConfig


class MemoryResponses(ResponseStore):
    def __init__(self) -> None:
        self._records: dict[str, StoredResponse] = {}

    @classmethod
    def over(cls, budget_store: BudgetStore | None, config: AccountingConfig) -> MemoryResponses:
        return cls()

    async def put(self, record: StoredResponse) -> None:
        self._records[record.id] = record.model_copy(deep=True)
        self._prune(time.time())

    async def get(self, response_id: str, *, owner: str, now: float) -> StoredResponse | None:
        record = self._records.get(response_id)
        if record is None or record.owner != owner or record.expires_at <= now:
            return None
        return record.model_copy(deep=True)

    async def delete(self, response_id: str, *, owner: str) -> bool:
        record = self._records.get(response_id)
        if record is None or record.owner != owner:
            return False
        del self._records[response_id]
        return True

    def _prune(self, now: float) -> None:
        for key in [k for k, r in self._records.items() if r.expires_at <= now]:
            del self._records[key]
