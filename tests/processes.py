"""Clean-up of processes the app under test leaves behind."""

from __future__ import annotations

import os
import signal
import subprocess


def orphaned_engines() -> list[int]:
    """vLLM engine processes whose replica died without stopping them.

    Such a process is re-parented to init, or to a subreaper (a container's init, a raylet with
    RAY_kill_child_processes_on_worker_exit_with_raylet_subreaper), so its parent is neither a
    Ray worker (titled `ray::...` from the moment it connects) nor another vLLM process.
    """
    out = subprocess.run(["ps", "-eo", "pid=,ppid=,args="], capture_output=True, text=True).stdout
    rows = [row for row in (line.split(None, 2) for line in out.splitlines()) if len(row) == 3]
    title = {pid: args for pid, _, args in rows}
    return [int(pid) for pid, ppid, args in rows
            if args.startswith("VLLM::") and not title.get(ppid, "").startswith(("ray::", "VLLM::"))]


def kill_orphaned_engines() -> None:
    """Orphaned engines keep ~2.5 GB each; on a 24 GB CI host a few get the next app killed.

    The replica's reaper stops them when a replica is killed; `ray stop --force` at the end of
    a session can still leave some, as can a run interrupted before this code existed.
    """
    for pid in orphaned_engines():
        subprocess.run(["pkill", "-KILL", "-P", str(pid)], capture_output=True)
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
