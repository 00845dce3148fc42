"""Stops a replica's vLLM engine processes when the replica dies without stopping them.

vLLM's EngineCore does not watch the process that started it. When Ray kills a replica
(SIGKILL: a failed health check, `ray stop --force`, the OOM killer), its EngineCore and
workers are re-parented and keep their memory (about 2.5 GB each for the 135M CPU model)
until the node restarts. The replica therefore starts this small watcher in its own session,
so it outlives the replica's process group; it waits for the replica to die and then stops
the engine processes the replica started. A graceful replica stop shuts the engine down
itself and stops the watcher first.

    python -m colm_serve.client_model.reaper --parent PID --target PID:CREATE_TIME ...
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import time

import psutil

_GRACE_S = 5.0


def _alive(targets: list[tuple[int, float]]) -> list[psutil.Process]:
    """The targets still running as the same process (a reused pid has another create time)."""
    procs = []
    for pid, created in targets:
        try:
            proc = psutil.Process(pid)
            if abs(proc.create_time() - created) < 0.01:
                procs.append(proc)
        except psutil.NoSuchProcess:
            continue
    return procs


def stop(targets: list[tuple[int, float]], grace_s: float = _GRACE_S) -> None:
    """SIGTERM first so vLLM can release what it holds, SIGKILL what is left after `grace_s`."""
    procs = _alive(targets)
    for proc in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.terminate()
    _, left = psutil.wait_procs(procs, timeout=grace_s)
    for proc in left:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.kill()
    psutil.wait_procs(left, timeout=grace_s)


def watch(parent: int, targets: list[tuple[int, float]], poll_s: float = 1.0) -> None:
    # Started by the parent, so it is our parent until it dies and we are re-parented.
    while os.getppid() == parent:
        time.sleep(poll_s)
    stop(targets)


def snapshot() -> dict[int, float]:
    """This process's descendants, pid -> create time."""
    snap = {}
    for proc in psutil.Process().children(recursive=True):
        try:
            snap[proc.pid] = proc.create_time()
        except psutil.NoSuchProcess:
            continue
    return snap


def start(before: dict[int, float], after: dict[int, float]) -> subprocess.Popen | None:
    """Starts a watcher for the processes in `after` that were not in `before`."""
    new = {pid: created for pid, created in after.items() if before.get(pid) != created}
    if not new:
        return None
    args = [sys.executable, "-m", "colm_serve.client_model.reaper", "--parent", str(os.getpid())]
    for pid, created in new.items():
        args += ["--target", f"{pid}:{created!r}"]
    return subprocess.Popen(args, start_new_session=True, stdin=subprocess.DEVNULL)


def _target(text: str) -> tuple[int, float]:
    pid, _, created = text.partition(":")
    return int(pid), float(created)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Stop engine processes when their parent dies.")
    parser.add_argument("--parent", type=int, required=True)
    parser.add_argument("--target", type=_target, action="append", required=True, help="PID:CREATE_TIME")
    parser.add_argument("--poll-s", type=float, default=1.0)
    args = parser.parse_args(argv)
    watch(args.parent, args.target, args.poll_s)
    return 0


if __name__ == "__main__":
    sys.exit(main())
