"""Reservations are exact under concurrency: 50 requests at once against room for 10 admit 10,
from one ledger or from two replicas' ledgers on one store, on every store."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import sys
import textwrap
from pathlib import Path

import pytest

from colm_serve.accounting.ledger import Estimate, Ledger
from colm_serve.accounting.stores import SqliteStore
from colm_serve.protocol.usage import Usage
from tests.accounting.conftest import Clock

ROOM_FOR_TEN = {
    "server_tokens_per_day": ({"server_tokens_per_day": 1000}, Estimate(server_tokens=100)),
    "cost_usd_per_day": ({"cost_usd_per_day": 1.25}, Estimate(cost_usd=0.125)),
    "requests_per_min": ({"requests_per_min": 10}, Estimate(server_tokens=100)),
}


@pytest.mark.parametrize("limit", sorted(ROOM_FOR_TEN))
@pytest.mark.parametrize("replicas", [1, 2])
async def test_fifty_concurrent_admissions_against_room_for_ten_admit_ten(open_store, limit, replicas):
    budgets, estimate = ROOM_FOR_TEN[limit]
    clock = Clock()
    ledgers = [Ledger(budgets, open_store(), clock=clock) for _ in range(replicas)]
    admissions = await asyncio.gather(*(ledgers[i % replicas].admit("app", estimate) for i in range(50)))
    granted = [a for a in admissions if a.ok]
    assert len(granted) == 10
    assert {a.reason.split(":")[0] for a in admissions if not a.ok} == {limit}
    assert len({a.reservation.id for a in granted}) == 10
    spent = Usage(server_prompt_tokens=estimate.server_tokens, cost_usd=estimate.cost_usd)
    await asyncio.gather(*(ledgers[i % replicas].settle(a, spent) for i, a in enumerate(granted)))
    for ledger in ledgers:
        await ledger.flush()
    row = (await ledgers[0].stats())["app"]
    assert row["requests"] == 10 and row["server_tokens"] == 10 * estimate.server_tokens
    assert row["cost_usd"] == pytest.approx(10 * estimate.cost_usd)
    assert not (await ledgers[-1].admit("app", estimate)).ok  # settled spend fills the budget as the reservations did
    for ledger in ledgers:
        await ledger.aclose()


REPLICA = textwrap.dedent("""
    import asyncio, json, sys
    from colm_serve.accounting.ledger import Estimate, Ledger
    from colm_serve.accounting.stores import SqliteStore

    async def main():
        ledger = Ledger({"server_tokens_per_day": 1000}, SqliteStore(sys.argv[1]))
        admissions = await asyncio.gather(*(ledger.admit("app", Estimate(server_tokens=100)) for _ in range(25)))
        await ledger.aclose()
        print(json.dumps(sum(a.ok for a in admissions)))

    asyncio.run(main())
""")


async def test_two_router_processes_share_one_sqlite_budget(tmp_path: Path):
    """The sqlite store's reservations are atomic across processes, not only threads."""
    path = str(tmp_path / "ledger.sqlite3")
    procs = [await asyncio.create_subprocess_exec(sys.executable, "-c", REPLICA, path,
                                                  stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
             for _ in range(2)]
    outputs = await asyncio.gather(*(p.communicate() for p in procs))
    for proc, (out, err) in zip(procs, outputs):
        assert proc.returncode == 0, err.decode()
    assert sum(json.loads(out) for out, _ in outputs) == 10


async def test_a_replica_opening_a_new_sqlite_ledger_waits_while_another_writes_it(tmp_path: Path):
    """Replicas that start together create the file together: while one holds its write lock,
    the file still in rollback mode, sqlite refuses the other's switch to WAL at once, without
    its busy timeout. The store waits instead of failing its first request."""
    path = tmp_path / "ledger.sqlite3"
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    other.execute("CREATE TABLE first_writer (x)")
    other.execute("BEGIN IMMEDIATE")
    other.execute("INSERT INTO first_writer VALUES (1)")
    asyncio.get_running_loop().call_later(0.3, other.execute, "COMMIT")
    ledger = Ledger({"server_tokens_per_day": 1000}, SqliteStore(path))
    try:
        assert (await ledger.admit("app", Estimate(server_tokens=100))).ok
    finally:
        await ledger.aclose()
        other.close()
