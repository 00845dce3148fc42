"""Opt-in: scripts/kill_loop.py's 5-kill proof as a serve test. It kills the ClientModel replica
five times, waiting each time for Serve's new replica (a minute or two on CPU), so it only runs
with COLM_KILL_LOOP=1."""

from __future__ import annotations

import os

import pytest

from scripts.kill_loop import kill_loop, summary

pytestmark = [
    pytest.mark.serve,
    pytest.mark.skipif(os.environ.get("COLM_KILL_LOOP") != "1", reason="opt-in: set COLM_KILL_LOOP=1 (about 10 min)"),
]


def test_five_replica_kills_leave_no_engine_process_behind(app_url, ray_driver) -> None:
    rounds = kill_loop(url=app_url, kills=5)
    report = "\n".join(summary(r) for r in rounds)
    assert len(rounds) == 5 and all(r.clean for r in rounds), report
