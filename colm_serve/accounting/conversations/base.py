"""The stored-responses interface: where `/v1/responses` keeps a response and its conversation.

A stored response carries the whole conversation up to it (every earlier turn's items, this
turn's input, its output), so the next turn with `previous_response_id` needs one read, on any
router replica. It belongs to the caller that made it (`owner`, the API key's label): any other
caller is told it does not exist. It expires `accounting.responses_ttl_s` after it was written.

The stores live in the backend the budget ledger already uses (memory, sqlite, Redis or Redis
Cluster), over the ledger store's own connection: each store is built from a `BudgetStore`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

if TYPE_CHECKING:
    from colm_serve.accounting.stores.base import BudgetStore
    from colm_serve.config import AccountingConfig


class StoredResponse(BaseModel):
    id: str
    owner: str
    response: dict[str, Any]  # the Response object, as GET /v1/responses/{id} returns it
    history: list[dict[str, Any]]  # the conversation before the output: earlier turns, then this turn's input
    input_start: int = 0  # where this turn's input begins in `history`
    expires_at: float

    def conversation(self) -> list[dict[str, Any]]:
        """What the next turn continues: the history and this response's output."""
        return [*self.history, *self.response.get("output", [])]

    def input_items(self) -> list[dict[str, Any]]:
        return self.history[self.input_start:]


class ResponseStore(ABC):
    """Stored responses, shared by every replica that shares the backend."""

    @classmethod
    @abstractmethod
    def over(cls, budget_store: BudgetStore | None, config: AccountingConfig) -> ResponseStore:
        """The store in `budget_store`'s backend, over its connection (None: a store of its own)."""

    @abstractmethod
    async def put(self, record: StoredResponse) -> None:
        """Write (or overwrite) `record`, to expire at `record.expires_at`."""

    @abstractmethod
    async def get(self, response_id: str, *, owner: str, now: float) -> StoredResponse | None:
        """The record, or None if it does not exist, has expired or belongs to another caller."""

    @abstractmethod
    async def delete(self, response_id: str, *, owner: str) -> bool:
        """Delete the record if `owner` owns it; whether it did."""

    async def aclose(self) -> None:
        """Release what the store owns (nothing, when it shares the ledger's connection)."""
