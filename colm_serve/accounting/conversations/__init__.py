"""Stored /v1/responses responses (a registry), in the backend of the budget ledger's store."""

from __future__ import annotations

from colm_serve.accounting.conversations.base import ResponseStore, StoredResponse
from colm_serve.accounting.conversations.memory import MemoryResponses
from colm_serve.accounting.conversations.redis import RedisResponses
from colm_serve.accounting.conversations.sqlite import SqliteResponses
from colm_serve.accounting.stores.base import BudgetStore
from colm_serve.config import AccountingConfig

RESPONSE_STORES: dict[str, type[ResponseStore]] = {"memory": MemoryResponses, "sqlite": SqliteResponses,
                                                   "redis": RedisResponses}


def build_response_store(config: AccountingConfig | dict, *, budget_store: BudgetStore | None = None) -> ResponseStore:
    """The store `config` names, over `budget_store`'s connection when given (the ledger's),
    else over a connection of its own; it connects on first use, not here."""
    config = AccountingConfig.model_validate(config)
    return RESPONSE_STORES[config.store].over(budget_store, config)


__all__ = ["RESPONSE_STORES", "MemoryResponses", "RedisResponses", "ResponseStore", "SqliteResponses",
           "StoredResponse", "build_response_store"]
