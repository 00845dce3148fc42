"""The ledger is a shared store, not the router's memory: a Router replica killed outright
comes back knowing the day's spend per key (the real app, real HTTP)."""

from __future__ import annotations

import time

import httpx
import pytest

from colm_serve.api.auth import Authenticator
from colm_serve.config import AuthConfig
from tests.reliability.replicas import kill_replica, wait_for_new_replica

pytestmark = pytest.mark.serve
TOKEN = "sk-restart-probe"


def _keys(app_url: str) -> dict:
    deadline = time.monotonic() + 120
    while True:
        try:
            return httpx.get(f"{app_url}/v1/colm/stats", timeout=10).json()["keys"]
        except (httpx.HTTPError, ValueError):
            if time.monotonic() > deadline:
                raise
            time.sleep(1)  # a sync serve test waiting for the new replica to answer


def test_spend_outlives_a_killed_router(app_url, ray_driver):
    label = Authenticator(AuthConfig()).anonymous_label(TOKEN)
    ask = {"model": "server/gpt-conv", "messages": [{"role": "user", "content": "Say hi."}], "max_tokens": 8,
           "colm": {"cache": False}}
    resp = httpx.post(f"{app_url}/v1/chat/completions", json=ask, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=120)
    assert resp.status_code == 200
    before = _keys(app_url)[label]
    killed = kill_replica("Router")
    wait_for_new_replica("Router", killed=killed)
    after = _keys(app_url)[label]
    assert before["requests"] >= 1 and before["cost_usd_today"] > 0
    assert after["requests"] >= before["requests"] and after["cost_usd_today"] >= before["cost_usd_today"]
