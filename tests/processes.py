"""Clean-up of processes the app under test leaves behind."""

from __future__ import annotations

import os
import signal
import subprocess


def kill_orphaned_engines() -> None:
    """vLLM engine processes of a killed replica are re-parented to init and keep ~2.5 GB each.

    Replica-kill tests and `ray stop --force` leave them behind; on a 24 GB CI host a few of
    them are enough to get the next app killed for memory.
    """
    out = subprocess.run(["ps", "-eo", "pid=,ppid=,args="], capture_output=True, text=True).stdout
    for line in out.splitlines():
        pid, ppid, args = line.split(None, 2)
        if ppid == "1" and args.startswith("VLLM::"):
            subprocess.run(["pkill", "-KILL", "-P", pid], capture_output=True)
            os.kill(int(pid), signal.SIGKILL)
