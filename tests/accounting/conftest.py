"""Stores for the accounting tests: the real thing each time, Redis included.

`redis_url` runs a private redis-server (no persistence, a free port, a tmp dir) for the
session. Without redis-server the Redis cases skip locally but fail under CI, where
`make test` has installed it. `open_store` opens store objects over one backing (one sqlite
file, one Redis key prefix), as several replicas, or a restarted one, would.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

from colm_serve.accounting.stores import BudgetStore, MemoryStore, build_store
from colm_serve.config import AccountingConfig

STORE_KINDS = ["memory", "sqlite", "redis"]
SHARED_KINDS = ["sqlite", "redis"]  # the ones that outlive a process
DAY = 86400.0


class Clock:
    def __init__(self, t: float = 1_000_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    binary = shutil.which("redis-server")
    if binary is None:
        message = "redis-server is not installed (`make redis` installs it)"
        if os.environ.get("CI"):
            pytest.fail(f"{message}; CI must run the Redis store tests")
        pytest.skip(message)
    port = _free_port()
    workdir = tmp_path_factory.mktemp("redis")
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(workdir)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    assert proc.stdout is not None
    log = []
    for line in proc.stdout:  # blocks until redis says it is ready, or exits (EOF)
        log.append(line)
        if "Ready to accept connections" in line:
            break
    else:
        pytest.fail(f"redis-server did not start:\n{''.join(log)}")
    try:
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        proc.stdout.close()


def store_config(kind: str, *, tmp_path: Path, request: pytest.FixtureRequest) -> AccountingConfig:
    if kind == "sqlite":
        return AccountingConfig(store="sqlite", path=tmp_path / "colm" / "ledger.sqlite3")
    if kind == "redis":
        return AccountingConfig(store="redis", url=request.getfixturevalue("redis_url"), key_prefix=f"t{uuid.uuid4().hex}")
    return AccountingConfig(store="memory")


@pytest.fixture(params=STORE_KINDS)
async def open_store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Callable[[], BudgetStore]]:
    """Opens another store object over the same backing; memory has one object to share."""
    config = store_config(request.param, tmp_path=tmp_path, request=request)
    shared = MemoryStore() if request.param == "memory" else None
    opened: list[BudgetStore] = []

    def open_one() -> BudgetStore:
        store = shared or build_store(config)
        opened.append(store)
        return store

    yield open_one
    for store in opened:
        await store.aclose()
