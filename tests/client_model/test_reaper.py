"""The engine-process reaper, with real processes: a stand-in replica builds an LLMEngine whose
engine factory starts a stand-in engine process, and is then killed the way Ray kills replicas."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import psutil
import pytest

from colm_serve.client_model import reaper

REPLICA = textwrap.dedent("""
    import subprocess, sys, time
    from colm_serve.client_model.engine import LLMEngine
    from colm_serve.config import EngineConfig

    class Engine:  # owns a process, as vLLM's AsyncLLM owns its EngineCore
        def __init__(self):
            self.proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])

        def shutdown(self):
            pass  # leaves the process running: the test checks that only the reaper stops it

    llm = LLMEngine(EngineConfig(), engine_factory=lambda cfg, model: Engine(), tokenizer_factory=lambda model: None)
    watcher = llm._reaper
    print(llm._engine.proc.pid, watcher.pid, flush=True)
    if sys.argv[1] == "graceful":
        del llm  # what Serve does on a graceful replica stop
        watcher.wait()
        print("stopped", flush=True)
    time.sleep(300)
""")


def gone_within(pid: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.1)
    return False


@pytest.fixture
def replica(request: pytest.FixtureRequest):
    proc = subprocess.Popen([sys.executable, "-c", REPLICA, request.param], stdout=subprocess.PIPE, text=True)
    engine_pid, watcher_pid = map(int, proc.stdout.readline().split())
    yield proc, engine_pid, watcher_pid
    for pid in (proc.pid, engine_pid, watcher_pid):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait()


@pytest.mark.parametrize("replica", ["killed"], indirect=True)
def test_a_killed_replica_takes_its_engine_processes_with_it(replica) -> None:
    proc, engine_pid, watcher_pid = replica
    assert psutil.Process(engine_pid).is_running()
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert gone_within(engine_pid, 15), "the engine process outlived its killed replica"
    assert gone_within(watcher_pid, 15), "the reaper should exit once its work is done"


@pytest.mark.parametrize("replica", ["graceful"], indirect=True)
def test_a_stopped_reaper_leaves_the_engine_to_its_owner(replica) -> None:
    proc, engine_pid, watcher_pid = replica
    assert proc.stdout.readline().strip() == "stopped"
    assert gone_within(watcher_pid, 5)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    time.sleep(2)  # longer than the reaper's poll: it would have acted by now
    assert psutil.Process(engine_pid).is_running()


ON_SIGTERM = "import signal, sys, time; signal.signal(signal.SIGTERM, {}); print('ready', flush=True); time.sleep(60)"


def test_stop_spares_a_reused_pid_and_asks_politely_first() -> None:
    code = ON_SIGTERM.format("lambda *_: (print('term', flush=True), sys.exit(0))")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        created = psutil.Process(proc.pid).create_time()
        reaper.stop([(proc.pid, created - 100.0)], grace_s=0.5)  # another process's create time
        assert proc.poll() is None
        reaper.stop([(proc.pid, created)], grace_s=5)
        assert proc.stdout.readline().strip() == "term"
        assert gone_within(proc.pid, 5)
    finally:
        proc.kill()


def test_stop_kills_what_ignores_sigterm() -> None:
    code = ON_SIGTERM.format("signal.SIG_IGN")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        started = time.monotonic()
        reaper.stop([(proc.pid, psutil.Process(proc.pid).create_time())], grace_s=0.5)
        assert gone_within(proc.pid, 5)
        assert time.monotonic() - started >= 0.5, "SIGKILL only after the grace period"
    finally:
        proc.kill()


def test_start_watches_only_new_processes() -> None:
    assert reaper.start({1: 1.0}, {1: 1.0}) is None
