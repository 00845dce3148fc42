"""`locust -f loadtest/` with its web UI: options from the start form reach the users, the
custom rows show live in /stats/requests, and quitting writes the files and the report.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.loadtest.locust_run import REPO


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for(predicate, *, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.5)  # polling a subprocess from a sync test
    pytest.fail(f"timed out waiting for {what}")


def _get(url: str) -> httpx.Response | None:
    """None while the UI cannot answer, so that a poll of a busy Locust (two cores, a test suite
    beside it) waits for the next one instead of failing the test."""
    try:
        return httpx.get(url, timeout=10)
    except httpx.TransportError:
        return None


def test_web_ui_run(fake_colm, tmp_path):
    port = _free_port()
    prefix = tmp_path / "web"
    ui = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "locust", "-f", "loadtest/", "--host", fake_colm.url, "--web-host", "127.0.0.1",
               "--web-port", str(port), "--csv", str(prefix), "--think-min", "0.2", "--think-max", "0.4"]
    log = (tmp_path / "locust.log").open("w")
    process = subprocess.Popen(command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
    try:
        page = _wait_for(lambda: (r := _get(ui)) is not None and r.status_code == 200 and r, timeout_s=60,
                         what="the web UI")
        assert "colm_mix" in page.text and "stream_ratio" in page.text  # our options are on the start form
        form = {"user_count": "2", "spawn_rate": "2", "host": fake_colm.url, "colm_mix": "colm-client=1",
                "max_tokens": "6", "stream_ratio": "1", "api_keys": "sk-from-ui", "colm_iterations": ""}
        assert httpx.post(f"{ui}/swarm", data=form, timeout=30).json()["success"] is True

        def ttft_rows():
            answer = _get(f"{ui}/stats/requests")
            stats = answer.json()["stats"] if answer is not None and answer.status_code == 200 else []
            return [s for s in stats if s["method"] == "METRIC" and s["name"] == "ttft_ms colm-client"
                    and s["num_requests"] >= 3]

        _wait_for(ttft_rows, timeout_s=60, what="live TTFT rows")
        assert httpx.post(f"{ui}/stop", timeout=30).json()["success"] is True
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
        log.close()
    sent = fake_colm.state.requests
    assert sent and {r["model"] for r in sent} == {"colm-client"} and {r["key"] for r in sent} == {"sk-from-ui"}
    assert all(r["stream"] is True and r["max_tokens"] == 6 for r in sent)
    assert Path(f"{prefix}_colm_requests.csv").exists() and Path(f"{prefix}_report.html").exists()
