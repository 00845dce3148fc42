"""The engine-process reaper, with real processes and no Ray: a stand-in replica builds an
LLMEngine whose injected engine starts a tree of stand-in engine processes, some of them late,
and the replica is then killed the way Ray kills replicas (SIGKILL)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest

from colm_serve.client_model import reaper
from colm_serve.client_model.engine import LLMEngine
from colm_serve.config import EngineConfig

STARTED_S = 60.0  # the replica imports the app's config models: slow on a loaded 2-core host
REAPED_S = 30.0  # watcher poll 0.5 s + SIGTERM grace 5 s, with room for a loaded host

# A stand-in engine process: records its pid, starts its children (some late), then idles.
# Like vLLM's EngineCore, which starts workers; a worker starts a child of its own; one process
# ignores SIGTERM, so only the watcher's SIGKILL stops it.
NODE = """
import os, signal, subprocess, sys, time
from pathlib import Path

CHILDREN = {"core": [(0, "worker"), (0, "stubborn"), (3.0, "late")], "worker": [(0, "worker-child")]}
role, out = sys.argv[1], Path(sys.argv[2])
if role == "stubborn":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
(out / f".{role}").write_text(str(os.getpid()))
(out / f".{role}").rename(out / role)
for delay, child in CHILDREN.get(role, []):
    time.sleep(delay)
    subprocess.Popen([sys.executable, __file__, child, str(out)])
time.sleep(120)
"""

# The stand-in replica: builds the engine through LLMEngine, the code path of the real replica.
REPLICA = """
import os, subprocess, sys, threading, time
from pathlib import Path
from colm_serve.client_model.engine import LLMEngine
from colm_serve.config import EngineConfig

mode, out = sys.argv[1], Path(sys.argv[2])

def mark(name, text):
    (out / f".{name}").write_text(text)
    (out / f".{name}").rename(out / name)

def start(role):
    return subprocess.Popen([sys.executable, str(out / "node.py"), role, str(out)])

class Engine:  # owns processes, as vLLM's AsyncLLM owns its EngineCore
    def __init__(self):
        self.core = start("core" if mode == "killed" else "solo")
        if mode == "killed":  # the replica process itself starts one more, later
            threading.Timer(1.5, start, ["replica-late"]).start()

    def shutdown(self):  # leaves its process running: only a watcher could stop it now
        mark("shutdown", "")

llm = LLMEngine(EngineConfig(), engine_factory=lambda cfg, model: Engine(), tokenizer_factory=lambda model: None,
                reap=True)
mark("watcher", str(llm._reaper.proc.pid))
mark("replica", str(os.getpid()))
if mode == "graceful":
    while not (out / "stop").exists():
        time.sleep(0.1)
    del llm  # what Serve does on a graceful replica stop
    mark("stopped", "")
time.sleep(120)
"""
ENGINE_TREE = ["core", "worker", "worker-child", "stubborn", "late", "replica-late"]


def wait_until(check: Callable[[], bool], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.1)  # a plain test polling other processes
    return check()


def gone(proc: psutil.Process) -> bool:
    """Exited, or a zombie nobody has reaped yet (it holds no memory); is_running() checks the
    create time, so a reused pid does not count as the process."""
    try:
        return not proc.is_running() or proc.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def marks(out: Path, names: list[str]) -> dict[str, str]:
    """What the stand-ins wrote (pids, markers), once all of it is there."""
    assert wait_until(lambda: all((out / n).exists() for n in names), STARTED_S), (
        f"not written within {STARTED_S:.0f} s: {[n for n in names if not (out / n).exists()]}"
    )
    return {n: (out / n).read_text() for n in names}


def processes(out: Path, roles: list[str]) -> dict[str, psutil.Process]:
    return {r: psutil.Process(int(pid)) for r, pid in marks(out, roles).items()}


def node(out: Path, role: str, **popen: object) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(out / "node.py"), role, str(out)], **popen)


@pytest.fixture
def out(tmp_path: Path) -> Iterator[Path]:
    (tmp_path / "node.py").write_text(NODE)
    yield tmp_path
    # What a failed test left: every stand-in names this test's own folder on its command line.
    for proc in psutil.process_iter(["cmdline"]):
        if str(tmp_path) in " ".join(proc.info["cmdline"] or []):
            with contextlib.suppress(psutil.NoSuchProcess):
                proc.kill()


def start_replica(out: Path, mode: str) -> subprocess.Popen:
    (out / "replica.py").write_text(REPLICA)
    return subprocess.Popen([sys.executable, str(out / "replica.py"), mode, str(out)])


def kill_like_ray(replica: subprocess.Popen) -> None:
    """ray.kill: the worker SIGKILLs its direct children (RAY_kill_child_processes_on_worker_exit),
    then exits; the watcher must not be among those children."""
    for child in psutil.Process(replica.pid).children():
        child.kill()
    replica.kill()


@pytest.mark.parametrize("kill", [kill_like_ray, subprocess.Popen.kill], ids=["ray.kill", "sigkill-alone"])
def test_a_killed_replica_takes_every_process_of_its_engine_with_it(out: Path, kill: Callable) -> None:
    bystander = node(out, "bystander")  # not the replica's: must be spared
    replica = start_replica(out, "killed")
    try:
        procs = processes(out, ["replica", "watcher", *ENGINE_TREE, "bystander"])
        group, reaped = procs["replica"].pid, ["watcher", *ENGINE_TREE]
        assert {r: os.getpgid(procs[r].pid) for r in reaped} == dict.fromkeys(reaped, group)
        assert procs["watcher"].ppid() != group, "a child of the replica dies with it under ray.kill"
        assert procs["late"].create_time() > procs["watcher"].create_time(), "late: started after the watcher"
        kill(replica)
        replica.wait()
        wait_until(lambda: all(gone(procs[r]) for r in reaped), REAPED_S)
        left = [r for r in reaped if not gone(procs[r])]
        assert not left, f"still running {REAPED_S:.0f} s after the replica was killed: {left}"
        assert not gone(procs["bystander"])
    finally:
        replica.kill()
        replica.wait()
        bystander.kill()
        bystander.wait()


def test_a_graceful_stop_shuts_the_engine_down_and_stops_the_watcher(out: Path) -> None:
    replica = start_replica(out, "graceful")
    try:
        procs = processes(out, ["replica", "watcher", "solo"])
        (out / "stop").write_text("")
        marks(out, ["stopped"])
        assert (out / "shutdown").exists(), "LLMEngine.__del__ must shut the engine down"
        assert gone(procs["watcher"]), "LLMEngine.__del__ must stop the watcher and wait for it"
        replica.kill()
        replica.wait()
        # No watcher is left, so nothing stops the process the engine left in the group.
        assert not gone(procs["solo"]) and os.getpgid(procs["solo"].pid) == procs["replica"].pid
    finally:
        replica.kill()
        replica.wait()


def test_a_reused_pid_is_spared_as_the_watcher_signals_only_its_own_group(out: Path) -> None:
    """The replica's pid, once free, may lead another group: one the watcher is not in. (While the
    watcher is in the replica's group, Linux does not reuse the pid at all.)"""
    other = node(out, "other", start_new_session=True)  # leads a group of its own, as a reused pid would
    try:
        proc = processes(out, ["other"])["other"]
        with pytest.raises(RuntimeError, match="not in group"):
            reaper.reap(other.pid, grace_s=0.1)
        cli = [sys.executable, "-m", "colm_serve.client_model.reaper", "--parent", str(other.pid), "--poll-s", "0.1"]
        watcher = subprocess.run(cli, capture_output=True, text=True, timeout=STARTED_S)
        assert watcher.returncode != 0 and "must run in group" in watcher.stderr
        assert not gone(proc)
    finally:
        other.kill()
        other.wait()


def test_outside_a_ray_actor_the_engine_leaves_its_callers_process_group_alone() -> None:
    """A test or tool keeps its group, so its terminal's Ctrl-C still reaches it."""
    group = os.getpgrp()
    llm = LLMEngine(EngineConfig(), engine_factory=lambda cfg, model: object(), tokenizer_factory=lambda model: None)
    assert llm._reaper is None
    assert os.getpgrp() == group
