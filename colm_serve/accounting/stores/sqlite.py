"""The one-node store: a sqlite file that every router replica on the node opens.

WAL mode lets readers go on while one replica writes; every operation is one `BEGIN
IMMEDIATE` transaction, which takes the file's write lock up front, so a check and the
reservation it grants are atomic across processes (the others wait, up to BUSY_TIMEOUT_S).

Where a transaction runs: on the event loop when the write lock is free, on the store's
thread when it is not. On the loop it never waits: its connection has no busy timeout, so a
lock held elsewhere fails it at BEGIN, and it is rolled back and handed to the thread, whose
connection waits for the lock. A commit there appends to the WAL without an fsync
(synchronous=NORMAL); the fsyncs come with checkpoints, which that connection leaves to the
thread: every CHECKPOINT_EVERY commits, a RESTART checkpoint, while the loop's transactions
queue on the thread behind it, so that it catches up with the WAL and the next commit starts
the WAL from its beginning (a checkpoint racing the loop's commits would never catch up, and
the WAL would grow without end). So the loop spends a transaction's own CPU (0.1-0.2 ms for
a reservation) and never waits on the disk or another process; handing every transaction to
the thread cost a request ~0.25 ms more CPU, in the handoffs and in passing the GIL back and
forth.

Rows of days before yesterday are pruned once a day; leaked reservations go with them.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from colm_serve.accounting.stores import base
from colm_serve.config import AccountingConfig, BudgetConfig

T = TypeVar("T")
logger = logging.getLogger("colm_serve.accounting")
BUSY_TIMEOUT_S = 30.0
CHECKPOINT_EVERY = 200  # the loop's commits between two checkpoints (~1000 WAL pages, sqlite's own default)
DAYS_KEPT = 2  # today and yesterday: a reservation made before midnight settles after it

SCHEMA = f"""
CREATE TABLE IF NOT EXISTS totals (label TEXT PRIMARY KEY, {", ".join(f"{f} REAL NOT NULL DEFAULT 0" for f in base.TOTAL_FIELDS)});
CREATE TABLE IF NOT EXISTS days (
    label TEXT NOT NULL, day INTEGER NOT NULL,
    server_tokens INTEGER NOT NULL DEFAULT 0, cost_usd REAL NOT NULL DEFAULT 0,
    reserved_tokens INTEGER NOT NULL DEFAULT 0, reserved_cost REAL NOT NULL DEFAULT 0,
    PRIMARY KEY (label, day));
CREATE TABLE IF NOT EXISTS reservations (
    id TEXT PRIMARY KEY, label TEXT NOT NULL, day INTEGER NOT NULL, server_tokens INTEGER NOT NULL, cost_usd REAL NOT NULL);
CREATE INDEX IF NOT EXISTS reservations_by_day ON reservations (day);
CREATE TABLE IF NOT EXISTS admitted (label TEXT NOT NULL, t REAL NOT NULL);
CREATE INDEX IF NOT EXISTS admitted_by_label ON admitted (label, t);
CREATE TABLE IF NOT EXISTS admitted_counts (label TEXT PRIMARY KEY, n INTEGER NOT NULL);
INSERT INTO admitted_counts (label, n)
    SELECT label, COUNT(*) FROM admitted WHERE NOT EXISTS (SELECT 1 FROM admitted_counts) GROUP BY label;
CREATE TRIGGER IF NOT EXISTS admitted_in AFTER INSERT ON admitted BEGIN
    INSERT INTO admitted_counts (label, n) VALUES (NEW.label, 1) ON CONFLICT (label) DO UPDATE SET n = n + 1;
END;
CREATE TRIGGER IF NOT EXISTS admitted_out AFTER DELETE ON admitted BEGIN
    UPDATE admitted_counts SET n = n - 1 WHERE label = OLD.label;
END;
"""
ADD_TOTALS = (f"INSERT INTO totals (label, {', '.join(base.TOTAL_FIELDS)}) VALUES (?{', ?' * len(base.TOTAL_FIELDS)}) "
              f"ON CONFLICT (label) DO UPDATE SET {', '.join(f'{f} = {f} + excluded.{f}' for f in base.TOTAL_FIELDS)}")
ADD_DAY = ("INSERT INTO days (label, day, server_tokens, cost_usd, reserved_tokens, reserved_cost) VALUES (?, ?, ?, ?, ?, ?) "
           "ON CONFLICT (label, day) DO UPDATE SET server_tokens = server_tokens + excluded.server_tokens, "
           "cost_usd = cost_usd + excluded.cost_usd, reserved_tokens = reserved_tokens + excluded.reserved_tokens, "
           "reserved_cost = reserved_cost + excluded.reserved_cost")
DAY_COLUMNS = "server_tokens, cost_usd, reserved_tokens, reserved_cost"


class SqliteStore(base.BudgetStore):
    def __init__(self, path: Path) -> None:
        self.path = Path(path).expanduser()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="colm-ledger-sqlite")
        self._conn: sqlite3.Connection | None = None  # opened, and only used, on the executor's thread
        self._loop_conn: sqlite3.Connection | None = None  # opened, and only used, on the loop's thread
        self._loop_thread = 0
        self._commits = 0  # on the loop, since its last checkpoint
        self._checkpoint: asyncio.Future[None] | None = None
        self._pruned_day = -1

    @classmethod
    def from_config(cls, config: AccountingConfig) -> SqliteStore:
        return cls(config.path)

    async def reserve(self, *, label: str, amounts: base.Amounts, limits: BudgetConfig, now: float) -> base.Reservation | base.Refusal:
        return await self.transaction(lambda db: _reserve(db, label=label, amounts=amounts, limits=limits, now=now))

    async def settle(self, batch: Sequence[base.Settlement]) -> None:
        today = base.day_of(max(item.now for item in batch)) if batch else -1
        prune = today > self._pruned_day
        await self.transaction(lambda db: _settle(db, batch, prune_before=today - DAYS_KEPT + 1 if prune else None))
        self._pruned_day = max(self._pruned_day, today)

    async def stats(self, *, now: float) -> dict[str, dict]:
        def read(db: sqlite3.Connection) -> dict[str, dict]:
            rows = db.execute(f"SELECT t.label, {', '.join('t.' + f for f in base.TOTAL_FIELDS)}, "
                              f"{', '.join('d.' + c for c in DAY_COLUMNS.split(', '))} FROM totals t "
                              "LEFT JOIN days d ON d.label = t.label AND d.day = ?", (base.day_of(now),)).fetchall()
            n = len(base.TOTAL_FIELDS)
            return {r[0]: base.stats_row(dict(zip(base.TOTAL_FIELDS, r[1:n + 1])), _day_use(r[n + 1:])) for r in rows}

        return await self.transaction(read, write=False)

    async def aclose(self) -> None:
        if self._loop_conn is not None:
            self._loop_conn.close()
            self._loop_conn = None
        if self._checkpoint is not None:
            await asyncio.gather(self._checkpoint, return_exceptions=True)
        if self._conn is not None:
            conn, self._conn = self._conn, None
            await asyncio.get_running_loop().run_in_executor(self._executor, conn.close)
        self._executor.shutdown(wait=True)

    async def transaction(self, work: Callable[[sqlite3.Connection], T], *, write: bool = True) -> T:
        """Run `work` in one transaction, on the loop if the write lock is free, else on the
        store's thread (see the module's docstring): BEGIN IMMEDIATE for writes, so the check
        and the write it decides are one step; a plain BEGIN (a WAL snapshot) for reads. `work`
        may run twice (a try on the loop that found the file locked is rolled back whole), so it
        changes nothing but the database. A caller cancelled meanwhile does not stop a started
        one: it commits or rolls back whole (a reserve whose caller is gone then holds its
        amounts until the day ends)."""
        db = self._on_loop() if self._checkpoint is None else None
        if db is not None:
            try:
                result = self._in_transaction(work, write, db)
            except sqlite3.OperationalError as exc:
                if exc.sqlite_errorcode & 0xFF not in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
                    raise
            else:
                self._committed_on_loop()
                return result
        return await asyncio.get_running_loop().run_in_executor(self._executor, self._in_transaction, work, write)

    def _on_loop(self) -> sqlite3.Connection | None:
        """The loop's connection, once the thread's has made the file (WAL, schema); None on a
        thread other than the one that opened it (a store is one replica's, on its one loop)."""
        if self._conn is None:
            return None
        if self._loop_conn is None:
            conn = sqlite3.connect(self.path, timeout=0, isolation_level=None)
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA wal_autocheckpoint=0")  # checkpoints fsync: the thread runs them
            self._loop_conn, self._loop_thread = conn, threading.get_ident()
        return self._loop_conn if threading.get_ident() == self._loop_thread else None

    def _committed_on_loop(self) -> None:
        self._commits += 1  # on the loop only while no checkpoint runs (see `transaction`)
        if self._commits < CHECKPOINT_EVERY:
            return
        self._commits = 0
        self._checkpoint = asyncio.get_running_loop().run_in_executor(self._executor, self._run_checkpoint)
        self._checkpoint.add_done_callback(self._checkpointed)

    def _run_checkpoint(self) -> None:
        self._connection().execute("PRAGMA wal_checkpoint(RESTART)")

    def _checkpointed(self, done: asyncio.Future[None]) -> None:
        self._checkpoint = None
        if not done.cancelled() and done.exception() is not None:
            logger.warning("ledger %s: a WAL checkpoint failed (the next one retries): %s", self.path, done.exception())

    def _in_transaction(self, work: Callable[[sqlite3.Connection], T], write: bool,
                        db: sqlite3.Connection | None = None) -> T:
        db = db or self._connection()
        db.execute("BEGIN IMMEDIATE" if write else "BEGIN")
        try:
            result = work(db)
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        return result

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
            try:
                mode = _to_wal(conn)
            except BaseException:
                conn.close()
                raise
            if mode != "wal":
                conn.close()
                raise RuntimeError(f"accounting.path {self.path}: sqlite cannot use WAL mode here (got {mode!r}); "
                                   "put the ledger on a local filesystem")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.executescript(f"BEGIN IMMEDIATE; {SCHEMA} COMMIT;")
            self._conn = conn
        return self._conn


def _to_wal(conn: sqlite3.Connection) -> str:
    """The journal mode after asking for WAL. While another connection holds a write lock on a
    file still in rollback mode (two replicas opening a new ledger at once), sqlite refuses the
    switch at once, without its busy timeout; so it is asked again until that timeout."""
    deadline, delay = time.monotonic() + BUSY_TIMEOUT_S, 0.005
    while True:
        try:
            return conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() + delay > deadline:
                raise
        time.sleep(delay)  # on the store's own thread, never the event loop's
        delay = min(delay * 2, 0.25)


def _reserve(db: sqlite3.Connection, *, label: str, amounts: base.Amounts, limits: BudgetConfig, now: float) -> base.Reservation | base.Refusal:
    count, oldest = 0, None
    if limits.requests_per_min is not None:
        db.execute("DELETE FROM admitted WHERE label = ? AND t <= ?", (label, now - base.RATE_WINDOW_S))
        count = _admitted_count(db, label)
        if count >= limits.requests_per_min:
            oldest = db.execute("SELECT MIN(t) FROM admitted WHERE label = ?", (label,)).fetchone()[0]
    day = base.day_of(now)
    today = _day_use(db.execute(f"SELECT {DAY_COLUMNS} FROM days WHERE label = ? AND day = ?", (label, day)).fetchone())
    refusal = base.rate_refusal(count=count, oldest=oldest, limits=limits, now=now) \
        or base.day_refusal(today=today, amounts=amounts, limits=limits, now=now)
    if refusal:
        return refusal
    if limits.requests_per_min is not None:
        db.execute("INSERT INTO admitted (label, t) VALUES (?, ?)", (label, now))
    held = base.Reservation(id=uuid.uuid4().hex, label=label, day=day, **amounts.model_dump())
    if not amounts.is_zero():
        db.execute(ADD_DAY, (label, day, 0, 0.0, held.server_tokens, held.cost_usd))
        db.execute("INSERT INTO reservations (id, label, day, server_tokens, cost_usd) VALUES (?, ?, ?, ?, ?)",
                   (held.id, label, day, held.server_tokens, held.cost_usd))
    return held


def _admitted_count(db: sqlite3.Connection, label: str) -> int:
    """The label's requests in the rate window, kept by triggers on `admitted`, so admission reads
    one row where counting the window would read every request of the last minute (thousands,
    at a few hundred requests a second)."""
    row = db.execute("SELECT n FROM admitted_counts WHERE label = ?", (label,)).fetchone()
    return row[0] if row else 0


def _settle(db: sqlite3.Connection, batch: Sequence[base.Settlement], *, prune_before: int | None) -> None:
    for item in batch:
        if item.reservation:
            held = db.execute("DELETE FROM reservations WHERE id = ? RETURNING label, day, server_tokens, cost_usd",
                              (item.reservation.id,)).fetchone()
            if held:
                db.execute(ADD_DAY, (held[0], held[1], 0, 0.0, -held[2], -held[3]))
        db.execute(ADD_DAY, (item.label, base.day_of(item.now), item.usage.server_tokens, item.usage.cost_usd, 0, 0.0))
        added = base.increments(item)
        db.execute(ADD_TOTALS, (item.label, *(added[f] for f in base.TOTAL_FIELDS)))
    if prune_before is not None:
        db.execute("DELETE FROM days WHERE day < ?", (prune_before,))
        db.execute("DELETE FROM reservations WHERE day < ?", (prune_before,))


def _day_use(row: Sequence | None) -> base.DayUse:
    if not row or row[0] is None:
        return base.DayUse()
    return base.DayUse(server_tokens=row[0], cost_usd=row[1], reserved_tokens=row[2], reserved_cost=row[3])
