"""Shared fixtures. `app_url` starts the real app once per test session.

The real app is what `make serve` runs, `colm-serve run serve_config.yaml`: Ray Serve on its
fast path (HAProxy), two vLLM engines (the client model and the embedded upstream server) and
the router, on 127.0.0.1:8000. Its start costs
a minute or two on a small CPU host, so every serve-marked test shares one instance. Set
COLM_TEST_APP_URL to test an app that is already running instead.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import pytest

from tests.processes import kill_orphaned_engines

ROOT = Path(__file__).resolve().parents[1]
APP_URL = "http://127.0.0.1:8000"
START_TIMEOUT_S = float(os.environ.get("COLM_TEST_START_TIMEOUT_S", "900"))


def _ready(url: str) -> bool:
    try:
        with httpx.Client(timeout=120) as http:
            if http.get(f"{url}/v1/models").status_code != 200:
                return False
            if http.get(f"{url}/upstream/v1/models").status_code != 200:
                return False
            probe = {"model": "colm-client", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4}
            return http.post(f"{url}/v1/chat/completions", json=probe).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.fixture(scope="session")
def serve_log() -> Path:
    return Path(tempfile.gettempdir()) / "colm-serve-test.log"


@pytest.fixture(scope="session")
def app_url(serve_log: Path):
    if os.environ.get("COLM_TEST_APP_URL"):
        yield os.environ["COLM_TEST_APP_URL"].rstrip("/")
        return
    kill_orphaned_engines()
    if _ready(APP_URL):
        pytest.fail("something already serves 127.0.0.1:8000; stop it or set COLM_TEST_APP_URL to use it")
    env = dict(os.environ, VLLM_CPU_KVCACHE_SPACE=os.environ.get("VLLM_CPU_KVCACHE_SPACE", "1"), PYTHONUNBUFFERED="1")
    launcher = Path(sys.executable).with_name("colm-serve")
    log = serve_log.open("w")
    proc = subprocess.Popen(
        [str(launcher), "run", "serve_config.yaml"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.time() + START_TIMEOUT_S
        while not _ready(APP_URL):
            if proc.poll() is not None:
                pytest.fail(f"serve run exited with {proc.returncode}; log tail:\n{_tail(serve_log)}")
            if time.time() > deadline:
                pytest.fail(f"the app was not ready after {START_TIMEOUT_S:.0f} s; log tail:\n{_tail(serve_log)}")
            time.sleep(3)
        yield APP_URL
    finally:
        _stop(proc)
        log.close()


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGINT)  # serve run shuts the app down on Ctrl-C; the launcher stops HAProxy
        try:
            proc.wait(timeout=90)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    subprocess.run([str(Path(sys.executable).with_name("ray")), "stop", "--force"], capture_output=True)
    kill_orphaned_engines()


def _tail(path: Path, lines: int = 60) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
