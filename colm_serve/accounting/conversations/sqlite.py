"""Stored responses in the ledger's sqlite file, through the ledger store's transactions (its
connections, WAL across the replicas of a node). Expired rows are pruned at most once a
minute, by a write."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from typing import TypeVar

from colm_serve.accounting.conversations.base import ResponseStore, StoredResponse
from colm_serve.accounting.stores.base import BudgetStore
from colm_serve.accounting.stores.sqlite import SqliteStore
from colm_serve.config import AccountingConfig

SCHEMA = (
    "CREATE TABLE IF NOT EXISTS responses (id TEXT PRIMARY KEY, owner TEXT NOT NULL, expires_at REAL NOT NULL, "
    "record TEXT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS responses_by_expiry ON responses (expires_at)",
)
PRUNE_EVERY_S = 60.0
T = TypeVar("T")


class SqliteResponses(ResponseStore):
    def __init__(self, ledger: SqliteStore, *, owned: bool = False) -> None:
        self._ledger = ledger  # its `transaction` runs work on the ledger's connections
        self._owned = owned
        self._ready = False
        self._pruned_at = 0.0

    @classmethod
    def over(cls, budget_store: BudgetStore | None, config: AccountingConfig) -> SqliteResponses:
        if budget_store is None:
            return cls(SqliteStore.from_config(config), owned=True)
        if not isinstance(budget_store, SqliteStore):
            raise TypeError(f"the sqlite responses store needs the sqlite ledger store, not {type(budget_store).__name__}")
        return cls(budget_store)

    async def put(self, record: StoredResponse) -> None:
        now = time.time()
        prune = now - self._pruned_at > PRUNE_EVERY_S

        def write(db: sqlite3.Connection) -> None:
            self._schema(db)
            db.execute("INSERT OR REPLACE INTO responses (id, owner, expires_at, record) VALUES (?, ?, ?, ?)",
                       (record.id, record.owner, record.expires_at, record.model_dump_json()))
            if prune:
                db.execute("DELETE FROM responses WHERE expires_at <= ?", (now,))

        await self._transaction(write)
        if prune:
            self._pruned_at = now

    async def get(self, response_id: str, *, owner: str, now: float) -> StoredResponse | None:
        def read(db: sqlite3.Connection) -> str | None:
            self._schema(db)
            row = db.execute("SELECT record FROM responses WHERE id = ? AND owner = ? AND expires_at > ?",
                             (response_id, owner, now)).fetchone()
            return row[0] if row else None

        raw = await self._transaction(read, write=not self._ready)
        return None if raw is None else StoredResponse.model_validate_json(raw)

    async def delete(self, response_id: str, *, owner: str) -> bool:
        def remove(db: sqlite3.Connection) -> bool:
            self._schema(db)
            return db.execute("DELETE FROM responses WHERE id = ? AND owner = ?", (response_id, owner)).rowcount > 0

        return await self._transaction(remove)

    async def aclose(self) -> None:
        if self._owned:
            await self._ledger.aclose()

    async def _transaction(self, work: Callable[[sqlite3.Connection], T], *, write: bool = True) -> T:
        result = await self._ledger.transaction(work, write=write)
        self._ready = True  # the table exists once a transaction that made it has committed
        return result

    def _schema(self, db: sqlite3.Connection) -> None:
        """Creates the table on first use, inside the caller's transaction; `_transaction` sets
        `_ready` once that has committed (a transaction may be tried twice: see SqliteStore)."""
        if not self._ready:
            for statement in SCHEMA:
                db.execute(statement)
