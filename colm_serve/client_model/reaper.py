"""Stops every process a replica's vLLM engine started when the replica dies without stopping them.

vLLM's EngineCore does not watch the process that started it. When Ray kills a replica
(`ray.kill`, a failed health check), the worker SIGKILLs its *direct* children and exits; the
OOM killer and `ray stop --force` SIGKILL the worker alone. Either way what the engine started
below its first level is re-parented and keeps its memory (about 2.5 GB per engine process for
the 135M CPU model) until the node restarts.

How: before the engine starts, the replica makes itself the leader of its own process group
(`guard`). Every process started from then on, by the replica, the engine or their children, at
start or an hour later, inherits the group. `guard` then starts a watcher in that same group,
through a launcher that exits at once, so the watcher is no child of the replica: Ray's kill of
the replica's children does not reach it. When the replica is gone the watcher SIGTERMs the group
(which it ignores itself) so vLLM can release what it holds, and SIGKILLs the group, itself
included, if anyone is still there after the grace period. A graceful stop shuts the engine down
itself and then stops the watcher (`Watcher.stop`).

Why a process group:
- Membership is the kernel's, not a snapshot, so nothing started late is missed. Only a process
  that calls setsid()/setpgid() itself leaves it; in vLLM only the snapshot CLI and the
  multi-API-server DP supervisor do, not the AsyncLLM -> EngineCore -> workers path used here.
- No reused pid or group is ever hit. While the watcher is a member, Linux keeps the group's id
  (the replica's pid) allocated, so no other process can get that pid: the watcher's liveness
  check of the replica and its killpg() both reach the replica's own. Only processes of the same
  session can join a group, and killpg() signals the members of that moment in one call, with no
  list-then-kill race. The watcher refuses to run outside the group it guards.
- It needs no privilege and nothing set where Ray starts. Ray kills a replica by its pid, not its
  group, and blocks SIGINT in its processes, so leaving raylet's group (the terminal's, under
  `serve run`) changes nothing for Ray. With RAY_process_group_cleanup_enabled a worker already
  leads its own group (`guard` then changes nothing) and Ray's killpg on its exit does our job.

Not chosen:
- PR_SET_PDEATHSIG: each child must set it after fork (vLLM starts them, not us), fork clears it
  (grandchildren lack it), and it fires when the forking *thread* ends, not the replica.
- PR_SET_CHILD_SUBREAPER: orphans go to the nearest subreaper *ancestor*. Only raylet is one
  (RAY_kill_child_processes_on_worker_exit_with_raylet_subreaper, deprecated in Ray 2.60); like
  RAY_process_group_cleanup_enabled it must be in the environment of every `ray start` and
  `serve run`, so an app started any other way would leak.
- A cgroup v2 per replica with cgroup.kill: needs a writable, delegated v2 hierarchy and Linux
  5.14+; CI hosts and containers often have v1 or a read-only /sys/fs/cgroup.

    python -m colm_serve.client_model.reaper --parent PID [--grace-s 5] [--poll-s 0.5] [--detach]
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import psutil

logger = logging.getLogger("colm_serve.reaper")
_GRACE_S = 5.0
_COMMAND = [sys.executable, "-m", "colm_serve.client_model.reaper"]


def in_ray_actor() -> bool:
    """Only a Ray actor is killed outright by someone else. A test or tool that builds the engine
    in its own process keeps its process group, so its terminal's Ctrl-C still reaches it."""
    import ray

    return ray.is_initialized() and ray.get_runtime_context().get_actor_id() is not None


@dataclass(frozen=True)
class Watcher:
    """The replica's handle on its watcher (not its child, so no Popen)."""

    proc: psutil.Process

    def stop(self, timeout_s: float = _GRACE_S) -> None:
        """For a graceful stop, once the engine is down: nothing is left for the watcher to do."""
        self.proc.terminate()  # psutil checks the create time first: a reused pid is not signalled
        if not _wait(lambda: _gone(self.proc), timeout_s):
            raise TimeoutError(f"the reaper's watcher {self.proc.pid} outlived SIGTERM by {timeout_s:.0f} s")


def guard() -> Watcher:
    """Makes this process lead its own process group and starts its watcher in that group.

    Call it before the engine starts: what starts before it stays in the old group.
    """
    if os.getpgrp() != os.getpid():  # a session leader leads its group already (setpgid: EPERM)
        os.setpgid(0, 0)
    launcher = subprocess.run([*_COMMAND, "--parent", str(os.getpid()), "--detach"], stdin=subprocess.DEVNULL,
                              stdout=subprocess.PIPE, text=True, check=True, timeout=60)
    return Watcher(psutil.Process(int(launcher.stdout)))


def members(pgid: int) -> list[psutil.Process]:
    """The live processes of the group, the calling process excepted (zombies hold nothing)."""
    found = []
    for pid in psutil.pids():
        try:
            if pid != os.getpid() and os.getpgid(pid) == pgid:
                proc = psutil.Process(pid)
                if not _gone(proc):
                    found.append(proc)
        except (ProcessLookupError, psutil.NoSuchProcess):
            continue  # exited while we looked: not a member any more
    return found


def reap(pgid: int, grace_s: float = _GRACE_S) -> None:
    """SIGTERM the group, then SIGKILL it, this watcher included, if anyone is left after `grace_s`."""
    if os.getpgrp() != pgid:
        raise RuntimeError(f"watcher {os.getpid()} is not in group {pgid}: its id may belong to another process now")
    left = members(pgid)
    if not left:
        return
    logger.warning("replica %d is gone; stopping its processes: %s", pgid, _names(left))
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # the group's SIGTERM reaches this watcher too
    os.killpg(pgid, signal.SIGTERM)
    if not _wait(lambda: not members(pgid), grace_s):
        logger.warning("SIGKILL to group %d, this watcher too, after %.0f s: %s", pgid, grace_s, _names(members(pgid)))
        os.killpg(pgid, signal.SIGKILL)


def watch(parent: int, *, grace_s: float = _GRACE_S, poll_s: float = 0.5) -> None:
    # We are in the parent's group, so pid `parent` is still the replica's (see the module docstring).
    while _running(parent):
        time.sleep(poll_s)  # a process with nothing else to do
    reap(parent, grace_s)


def _running(pid: int) -> bool:
    try:
        return not _gone(psutil.Process(pid))
    except psutil.NoSuchProcess:
        return False


def _gone(proc: psutil.Process) -> bool:
    """Exited, or a zombie: it holds no memory, and its parent may never reap it."""
    try:
        return not proc.is_running() or proc.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _wait(done: Callable[[], bool], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while not done():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)  # polling other processes' exit; nothing else to do meanwhile
    return True


def _names(procs: list[psutil.Process]) -> str:
    named = []
    for proc in procs:
        try:
            named.append(f"{proc.pid} {proc.name()}")
        except psutil.NoSuchProcess:
            continue  # exited since it was listed
    return ", ".join(named)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Stop a replica's process group when the replica dies.")
    parser.add_argument("--parent", type=int, required=True, help="the replica: its pid is the group's id")
    parser.add_argument("--grace-s", type=float, default=_GRACE_S, help="between SIGTERM and SIGKILL")
    parser.add_argument("--poll-s", type=float, default=0.5)
    parser.add_argument("--detach", action="store_true", help="start the watcher, print its pid and exit")
    args = parser.parse_args(argv)
    if os.getpgrp() != args.parent:
        parser.error(f"this watcher must run in group {args.parent}; it is in {os.getpgrp()}")
    if args.detach:  # the launcher: its exit leaves the watcher to init, out of Ray's reach
        rest = ["--parent", str(args.parent), "--grace-s", str(args.grace_s), "--poll-s", str(args.poll_s)]
        watcher = subprocess.Popen([*_COMMAND, *rest], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        print(watcher.pid)
        return 0
    logging.basicConfig(level=logging.INFO, format="%(asctime)s reaper[%(process)d] %(message)s")
    # A replica thread may block SIGTERM and we inherit its mask; a graceful stop sends SIGTERM.
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
    watch(args.parent, grace_s=args.grace_s, poll_s=args.poll_s)
    return 0


if __name__ == "__main__":
    sys.exit(main())
