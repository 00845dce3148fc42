"""Killing a replica of the running app mid-request: in-flight requests finish or fail with
a clear OpenAI-format 5xx (never hang), Serve starts a new replica, later requests succeed.

The killed replicas: ServerProxy-local (fronts the upstream server; restarts in seconds)
and ClientModel (the vLLM client model; its engine takes a minute or two to come back).
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.processes import orphaned_engines
from tests.reliability.replicas import kill_replica, wait_for_new_replica

pytestmark = pytest.mark.serve
logger = logging.getLogger(__name__)

REAPED_S = 20.0  # the reaper polls every second, then gives vLLM 5 s to exit on SIGTERM
REQUEST_TIMEOUT_S = 240.0  # an in-flight request that has not answered by then has hung
RECOVERY_S = 240.0
ASK = [{"role": "user", "content": "Explain in a few sentences why the sky is blue."}]
# What is in flight when the replica dies: requests that need the killed deployment.
IN_FLIGHT = {
    "ServerProxy-local": [
        {"model": "server/gpt-conv", "messages": ASK, "max_tokens": 128, "colm": {"cache": False}},
        {"model": "server/qwen-math", "messages": ASK, "max_tokens": 128, "colm": {"cache": False}},
        {"model": "colm", "messages": ASK, "max_tokens": 32, "colm": {"iterations": 0, "cache": False}},
    ],
    "ClientModel": [
        {"model": "colm-client", "messages": ASK, "max_tokens": 200},
        {"model": "colm-client", "messages": ASK, "max_tokens": 200, "stream": True},
        {"model": "colm-client", "messages": ASK, "max_tokens": 120},
    ],
}
SETTLE_S = {"ServerProxy-local": 0.7, "ClientModel": 2.0}  # until the requests reach the deployment
PROBE = {
    "ServerProxy-local": {"model": "server/gpt-conv", "messages": [{"role": "user", "content": "Say hi."}], "max_tokens": 8},
    "ClientModel": {"model": "colm-client", "messages": [{"role": "user", "content": "Say hi."}], "max_tokens": 8},
}


def _outcome(url: str, body: dict) -> tuple[int, str]:
    """(status, what it was): 'answer', an error type, or an SSE stream's end."""
    with httpx.Client(timeout=REQUEST_TIMEOUT_S) as http:
        resp = http.post(f"{url}/v1/chat/completions", json=body)
    if resp.status_code == 200 and body.get("stream"):
        assert resp.text.rstrip().endswith("data: [DONE]"), resp.text[-300:]
        errors = [line for line in resp.text.splitlines() if line.startswith('data: {"error"')]
        return (200, "answer") if not errors else (503, errors[0])
    if resp.status_code == 200:
        assert resp.json()["choices"][0]["message"]["content"] is not None
        return 200, "answer"
    error = resp.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["message"], resp.text
    return resp.status_code, error["type"]


def _recovered(url: str, body: dict) -> float:
    t0, last = time.monotonic(), None
    while time.monotonic() - t0 < RECOVERY_S:
        try:
            resp = httpx.post(f"{url}/v1/chat/completions", json=body, timeout=60)
            if resp.status_code == 200:
                return time.monotonic() - t0
            last = f"{resp.status_code} {resp.text[:200]}"
        except httpx.HTTPError as exc:
            last = repr(exc)
        time.sleep(3)  # sync serve test waiting for Serve to replace the replica
    raise AssertionError(f"no successful request {RECOVERY_S:.0f} s after the kill; last: {last}")


def _assert_engine_reaped() -> None:
    """The killed replica's vLLM processes must not outlive it holding their memory."""
    deadline = time.monotonic() + REAPED_S
    while orphaned_engines() and time.monotonic() < deadline:
        time.sleep(1)  # sync serve test waiting for the reaper
    assert not orphaned_engines(), f"vLLM processes of the killed replica still run: {orphaned_engines()}"


@pytest.mark.parametrize("deployment", ["ServerProxy-local", "ClientModel"])
def test_a_killed_replica_fails_cleanly_and_is_replaced(app_url, ray_driver, deployment):
    bodies = IN_FLIGHT[deployment]
    with ThreadPoolExecutor(len(bodies)) as pool:
        futures = [pool.submit(_outcome, app_url, body) for body in bodies]
        time.sleep(SETTLE_S[deployment])
        killed = kill_replica(deployment)
        outcomes = [f.result(timeout=REQUEST_TIMEOUT_S + 30) for f in futures]
    logger.info("killed %s; in-flight outcomes: %s", killed, outcomes)
    for status, kind in outcomes:
        assert status == 200 or 500 <= status < 600, (status, kind)
    if deployment == "ClientModel":
        _assert_engine_reaped()
    wait_for_new_replica(deployment, killed=killed, timeout_s=RECOVERY_S)
    _recovered(app_url, PROBE[deployment])
    # The rest of the app kept serving throughout, and serves after.
    assert _recovered(app_url, PROBE["ClientModel" if deployment != "ClientModel" else "ServerProxy-local"]) < 60
