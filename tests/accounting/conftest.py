"""Stores for the accounting tests: the real thing each time, Redis and Redis Cluster included.

`redis_url` runs a private redis-server (no persistence, a free port, a tmp dir) for the
session; `redis_cluster_url` runs three of them in cluster mode, joined into one cluster of
three masters. Without redis-server the Redis cases skip locally but fail under CI, where
`make test` has installed it. `open_store` opens store objects over one backing (one sqlite
file, one Redis key prefix), as several replicas, or a restarted one, would.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from colm_serve.accounting.stores import BudgetStore, MemoryStore, build_store
from colm_serve.config import AccountingConfig

STORE_KINDS = ["memory", "sqlite", "redis", "redis-cluster"]
SHARED_KINDS = ["sqlite", "redis", "redis-cluster"]  # the ones that outlive a process
DAY = 86400.0
CLUSTER_START_S = 30.0


class Clock:
    def __init__(self, t: float = 1_000_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def _free_ports(n: int) -> list[int]:
    with ExitStack() as stack:  # all held open at once, so they differ
        sockets = [stack.enter_context(socket.socket()) for _ in range(n)]
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]


def _redis_binary(name: str) -> str:
    binary = shutil.which(name)
    if binary is None:
        message = f"{name} is not installed (`make redis` installs it)"
        if os.environ.get("CI"):
            pytest.fail(f"{message}; CI must run the Redis store tests")
        pytest.skip(message)
    return binary


def _start_redis(stack: ExitStack, *, port: int, workdir: Path, extra: list[str]) -> None:
    """A redis-server without persistence, stopped when `stack` closes; returns once it is ready."""
    proc = subprocess.Popen(
        [_redis_binary("redis-server"), "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", str(workdir), *extra],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    stack.callback(_stop, proc)
    assert proc.stdout is not None
    log = []
    for line in proc.stdout:  # blocks until redis says it is ready, or exits (EOF)
        log.append(line)
        if "Ready to accept connections" in line:
            return
    pytest.fail(f"redis-server did not start:\n{''.join(log)}")


def _stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    proc.wait(timeout=10)
    if proc.stdout is not None:
        proc.stdout.close()


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with ExitStack() as stack:
        [port] = _free_ports(1)
        _start_redis(stack, port=port, workdir=tmp_path_factory.mktemp("redis"), extra=[])
        yield f"redis://127.0.0.1:{port}/0"


@pytest.fixture(scope="session")
def redis_cluster_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Three masters on loopback, slots split evenly; the URL names one, the client finds the others."""
    cli = _redis_binary("redis-cli")
    ports = _free_ports(6)  # three client ports, three cluster-bus ports (port + 10000 may not exist)
    nodes = [f"127.0.0.1:{p}" for p in ports[:3]]
    with ExitStack() as stack:
        for port, bus in zip(ports[:3], ports[3:]):
            workdir = tmp_path_factory.mktemp(f"redis-cluster-{port}")
            _start_redis(stack, port=port, workdir=workdir, extra=[
                "--cluster-enabled", "yes", "--cluster-port", str(bus), "--cluster-config-file", str(workdir / "nodes.conf")])
        created = subprocess.run([cli, "--cluster", "create", *nodes, "--cluster-replicas", "0", "--cluster-yes"],
                                 capture_output=True, text=True, timeout=CLUSTER_START_S)
        if created.returncode:
            pytest.fail(f"redis-cli --cluster create failed:\n{created.stdout}{created.stderr}")
        _wait_for_cluster(cli, ports[:3])
        yield f"redis://{nodes[0]}"


def _wait_for_cluster(cli: str, ports: list[int]) -> None:
    """Until every node reports cluster_state:ok (the nodes agree a moment after `create` returns)."""
    deadline = time.monotonic() + CLUSTER_START_S
    waiting = list(ports)
    while waiting:
        info = subprocess.run([cli, "-p", str(waiting[0]), "cluster", "info"], capture_output=True, text=True, timeout=10)
        if "cluster_state:ok" in info.stdout:
            waiting.pop(0)
        elif time.monotonic() > deadline:
            pytest.fail(f"redis cluster node {waiting[0]} is not ok after {CLUSTER_START_S}s:\n{info.stdout}")
        else:
            time.sleep(0.05)  # a poll of a process outside the event loop, not a rate limit


def store_config(kind: str, *, tmp_path: Path, request: pytest.FixtureRequest) -> AccountingConfig:
    if kind == "sqlite":
        return AccountingConfig(store="sqlite", path=tmp_path / "colm" / "ledger.sqlite3")
    if kind == "redis":
        return AccountingConfig(store="redis", url=request.getfixturevalue("redis_url"), key_prefix=f"t{uuid.uuid4().hex}")
    if kind == "redis-cluster":
        return AccountingConfig(store="redis", cluster=True, url=request.getfixturevalue("redis_cluster_url"),
                                key_prefix=f"t{uuid.uuid4().hex}")
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
