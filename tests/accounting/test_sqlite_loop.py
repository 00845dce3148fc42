"""Where the sqlite store runs a transaction: on the event loop while the file's write lock is
free (no thread handoff on the request path), on its thread, waiting, while another connection
holds it; the loop never waits. Checkpoints (the fsyncs) run on the thread."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path

from colm_serve.accounting.ledger import Estimate, Ledger
from colm_serve.accounting.stores import sqlite as sqlite_store
from colm_serve.accounting.stores.sqlite import SqliteStore

EST = Estimate(server_tokens=10, cost_usd=0.0001)
BUDGETS = {"requests_per_min": 1000, "server_tokens_per_day": 10_000}


def _where(db: sqlite3.Connection) -> int:
    db.execute("SELECT 1").fetchone()
    return threading.get_ident()


async def test_a_free_file_is_written_on_the_loop_and_a_locked_one_on_the_thread_without_blocking_the_loop(tmp_path: Path):
    store = SqliteStore(tmp_path / "ledger.sqlite3")
    loop_thread = threading.get_ident()
    try:
        assert await store.transaction(_where) != loop_thread  # the first one makes the file, on the thread
        assert await store.transaction(_where) == loop_thread
        assert await store.transaction(_where, write=False) == loop_thread

        other = sqlite3.connect(store.path, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")  # another replica holds the write lock
        waiting = asyncio.create_task(store.transaction(_where))
        ticks = 0
        for _ in range(20):  # the loop goes on while the transaction waits for the lock
            await asyncio.sleep(0.01)
            ticks += 1
        assert not waiting.done() and ticks == 20
        other.execute("COMMIT")
        assert await asyncio.wait_for(waiting, 10) != loop_thread
        other.close()
        assert await store.transaction(_where) == loop_thread  # back on the loop once the lock is free
    finally:
        await store.aclose()


async def test_a_reservation_refused_on_the_loop_is_the_same_as_on_the_thread(tmp_path: Path):
    """The budgets hold whichever side runs the check: five admissions fit, the sixth is refused,
    with one of them made while another connection held the lock."""
    path = tmp_path / "ledger.sqlite3"
    ledger = Ledger({"server_tokens_per_day": 50}, SqliteStore(path))
    try:
        assert (await ledger.admit("a", EST)).ok
        other = sqlite3.connect(path, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        waiting = asyncio.create_task(ledger.admit("a", EST))
        await asyncio.sleep(0.05)
        other.execute("COMMIT")
        other.close()
        assert (await waiting).ok
        for _ in range(3):
            assert (await ledger.admit("a", EST)).ok
        refused = await ledger.admit("a", EST)
        assert not refused.ok and refused.reason.startswith("server_tokens_per_day: 0 of 50 used today, 50 reserved")
    finally:
        await ledger.aclose()


async def test_the_loop_leaves_checkpoints_to_the_thread_and_they_keep_the_wal_small(tmp_path: Path, monkeypatch):
    monkeypatch.setattr(sqlite_store, "CHECKPOINT_EVERY", 10)
    path = tmp_path / "ledger.sqlite3"
    ledger = Ledger(BUDGETS, SqliteStore(path))
    try:
        for _ in range(400):
            assert (await ledger.admit("a", EST)).ok
            await asyncio.sleep(0)  # a checkpoint started on the thread finishes while requests go on
        await ledger.flush()
        wal = Path(f"{path}-wal")
        # 400 commits of ~5 pages each are ~8 MB of WAL if no checkpoint catches up with it; with
        # one every 10 commits the next commit rewinds the WAL, and its file stays at its most.
        assert wal.stat().st_size < 2_000_000, wal.stat().st_size
        with sqlite3.connect(path) as db:
            assert db.execute("SELECT COUNT(*) FROM reservations").fetchone() == (400,)
    finally:
        await ledger.aclose()
