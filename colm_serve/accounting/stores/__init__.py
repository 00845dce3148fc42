"""Budget stores (a registry): where the ledgers of all router replicas share their counters."""

from __future__ import annotations

from colm_serve.accounting.stores.base import BudgetStore
from colm_serve.accounting.stores.memory import MemoryStore
from colm_serve.accounting.stores.redis import RedisStore
from colm_serve.accounting.stores.sqlite import SqliteStore
from colm_serve.config import AccountingConfig

STORES: dict[str, type[BudgetStore]] = {"memory": MemoryStore, "sqlite": SqliteStore, "redis": RedisStore}


def build_store(config: AccountingConfig | dict) -> BudgetStore:
    """The store `config` names; it connects on first use, not here."""
    config = AccountingConfig.model_validate(config)
    return STORES[config.store].from_config(config)


__all__ = ["STORES", "BudgetStore", "MemoryStore", "RedisStore", "SqliteStore", "build_store"]
