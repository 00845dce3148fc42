"""What the kernel enforces on a sandboxed child, set between fork and exec: resource limits
and, where the parent is root, a network namespace of its own (only a loopback that is down).

These are the walls; the audit hook of `child_guard.py` is the seat belt on top of them.
"""

from __future__ import annotations

import ctypes
import functools
import logging
import math
import os
import resource
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger(__name__)

CLONE_NEWNET = 0x40000000


@dataclass(frozen=True)
class Limits:
    """Bounds on one sandboxed run. The CPU limit is the wall-clock timeout plus one second,
    so a busy loop dies by SIGXCPU even if the parent's timer were late."""

    timeout_s: float = 10.0
    memory_bytes: int = 1 << 30
    file_bytes: int = 16 << 20
    open_files: int = 64

    def rlimits(self) -> list[tuple[int, int]]:
        """(resource, value) pairs; no RLIMIT_NPROC: it counts every process of the user
        (Ray's included) and root ignores it, so the guard refuses process creation instead."""
        cpu = math.ceil(self.timeout_s) + 1
        return [
            (resource.RLIMIT_AS, self.memory_bytes),
            (resource.RLIMIT_CPU, cpu),
            (resource.RLIMIT_FSIZE, self.file_bytes),
            (resource.RLIMIT_NOFILE, self.open_files),
            (resource.RLIMIT_CORE, 0),
        ]


@functools.cache
def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def child_setup(limits: Limits, *, new_netns: bool) -> Callable[[], None]:
    """The preexec function: runs in the forked child before exec, so the limits and the
    namespace hold from the program's first instruction. Any failure aborts the spawn."""
    libc = _libc()  # loaded in the parent: nothing is imported after fork
    pairs = limits.rlimits()

    def setup() -> None:
        if new_netns and libc.unshare(CLONE_NEWNET) != 0:
            errno = ctypes.get_errno()
            raise OSError(errno, f"unshare(CLONE_NEWNET): {os.strerror(errno)}")
        for which, value in pairs:
            _, hard = resource.getrlimit(which)
            capped = value if hard == resource.RLIM_INFINITY else min(value, hard)
            resource.setrlimit(which, (capped, capped))

    return setup


@functools.cache
def network_namespace_available() -> bool:
    """Whether a child can get its own network namespace here: only as root, and only where
    the kernel and any seccomp policy allow unshare. Probed once, by spawning a child."""
    if os.geteuid() != 0:
        log.warning("sandbox: not root, so no network namespace; the audit hook alone refuses sockets")
        return False
    try:
        subprocess.run([sys.executable, "-I", "-S", "-c", "pass"], check=True, timeout=30,
                       preexec_fn=child_setup(Limits(), new_netns=True))
    except (OSError, subprocess.SubprocessError) as exc:
        log.warning("sandbox: no network namespace (%s); the audit hook alone refuses sockets", exc)
        return False
    return True
