"""Clean-up of processes the app under test leaves behind."""

from __future__ import annotations

import os
import signal
import subprocess


def orphaned_engines() -> list[int]:
    """vLLM engine processes whose replica died without stopping them (re-parented to init)."""
    out = subprocess.run(["ps", "-eo", "pid=,ppid=,args="], capture_output=True, text=True).stdout
    rows = (line.split(None, 2) for line in out.splitlines())
    return [int(row[0]) for row in rows if len(row) == 3 and row[1] == "1" and row[2].startswith("VLLM::")]


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
