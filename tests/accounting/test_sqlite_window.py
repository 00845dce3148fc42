"""The sqlite store's rate window: a per-label count kept by triggers, so admission reads one row.
It must agree with the rows in the window, and a ledger file written before the count existed
must be counted when a replica opens it."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from colm_serve.accounting.ledger import Estimate, Ledger
from colm_serve.accounting.stores.sqlite import SqliteStore
from tests.accounting.conftest import Clock

EST = Estimate(server_tokens=10, cost_usd=0.0001, per_specialist_tokens=5, per_specialist_cost=0.00005, specialists=2)


def _counts(path: Path) -> dict[str, tuple[int, int]]:
    """Per label: the kept count, and the rows it stands for."""
    with sqlite3.connect(path) as db:
        kept = dict(db.execute("SELECT label, n FROM admitted_counts").fetchall())
        rows = dict(db.execute("SELECT label, COUNT(*) FROM admitted GROUP BY label").fetchall())
    return {label: (kept.get(label, 0), rows.get(label, 0)) for label in kept | rows}


async def test_the_kept_count_follows_the_window_as_requests_come_and_leave(tmp_path: Path):
    clock, path = Clock(), tmp_path / "ledger.sqlite"
    ledger = Ledger({"requests_per_min": 5}, SqliteStore(path), clock=clock)
    for step in range(4):
        assert (await ledger.admit("a", EST)).ok
        assert (await ledger.admit("b", EST)).ok
        clock.t += 20
    assert _counts(path) == {"a": (3, 3), "b": (3, 3)}  # the first of each left the window at +60
    for _ in range(3):  # at +80, the one at +20 leaves: +40 and +60 stay
        assert (await ledger.admit("a", EST)).ok
    refused = await ledger.admit("a", EST)
    assert not refused.ok and refused.reason == "requests_per_min: 5 requests in the last minute"
    assert refused.retry_after_s == pytest.approx(20)  # when the oldest of the five (+40) leaves
    clock.t += 200
    assert (await ledger.admit("a", EST)).ok
    assert _counts(path) == {"a": (1, 1), "b": (3, 3)}  # b's rows leave with b's next request
    await ledger.aclose()


async def test_a_ledger_written_before_the_count_is_counted_when_opened(tmp_path: Path):
    clock, path = Clock(), tmp_path / "ledger.sqlite"
    with sqlite3.connect(path) as db:  # the window as it was kept: rows only, no count
        db.execute("CREATE TABLE admitted (label TEXT NOT NULL, t REAL NOT NULL)")
        db.executemany("INSERT INTO admitted (label, t) VALUES (?, ?)", [("a", clock.t - s) for s in (30, 20, 10)])
    ledger = Ledger({"requests_per_min": 3}, SqliteStore(path), clock=clock)
    refused = await ledger.admit("a", EST)
    assert not refused.ok and refused.retry_after_s == pytest.approx(30)
    assert (await ledger.admit("b", EST)).ok
    clock.t += 31
    assert (await ledger.admit("a", EST)).ok
    assert _counts(path) == {"a": (3, 3), "b": (1, 1)}
    await ledger.aclose()
    reopened = Ledger({"requests_per_min": 3}, SqliteStore(path), clock=clock)  # a count is never seeded twice
    assert not (await reopened.admit("a", EST)).ok
    assert _counts(path) == {"a": (3, 3), "b": (1, 1)}
    await reopened.aclose()
