"""`colm-chat` shows the collaboration as it happens, in a real terminal.

A fake CoLM server (tests/loadtest/fake_colm_server.py, real HTTP) streams its steps as
`reasoning_content`, pauses, then streams the answer; `colm-chat` runs inside tmux and the
test reads the screen with `tmux capture-pane` while it works.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from rich.console import Console

from clients.chat import main, render_usage
from tests.loadtest.conftest import RunningFake, running_fake
from tests.loadtest.fake_colm_server import ANSWER_WORDS, PROGRESS

ROOT = Path(__file__).resolve().parents[2]
QUESTION = "How do I reverse a list in Python?"
GUIDANCE = "items[::-1] makes a reversed copy"  # a step's text (PROGRESS)
ANSWER = " ".join(ANSWER_WORDS[:5])
PAUSE_S = 3.0


@pytest.fixture
def fake() -> Iterator[RunningFake]:
    with running_fake() as running:
        running.state.progress_pause_s = PAUSE_S
        yield running


class Tmux:
    """A private tmux server (its own socket) with one pane running a command."""

    def __init__(self, command: list[str]) -> None:
        self.socket = f"colm-chat-test-{uuid.uuid4().hex[:8]}"
        script = " ".join(_quote(c) for c in command) + "; echo EXIT=$?; sleep 600"
        self._tmux("new-session", "-d", "-s", "chat", "-x", "110", "-y", "60", "-c", str(ROOT), script)

    def screen(self) -> str:
        return self._tmux("capture-pane", "-p", "-J", "-t", "chat", "-S", "-500").stdout

    def wait_for(self, text: str, timeout_s: float = 30) -> str:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            screen = self.screen()
            if text in screen:
                return screen
            time.sleep(0.05)  # polling a terminal from a sync test
        raise AssertionError(f"{text!r} never appeared; the screen:\n{self.screen()}")

    def close(self) -> None:
        self._tmux("kill-server", check=False)

    def _tmux(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run(["tmux", "-L", self.socket, *args], capture_output=True, text=True, check=check, timeout=30)


def _quote(arg: str) -> str:
    return "'" + arg.replace("'", "'\\''") + "'"


def _tmux_present() -> None:
    if shutil.which("tmux"):
        return
    if os.environ.get("CI"):
        pytest.fail("tmux is missing; under CI it must be there (`make test` installs it)")
    pytest.skip("tmux is not installed (`make test` installs it)")


def test_colm_chat_shows_the_steps_live_before_the_answer(fake):
    _tmux_present()
    pane = Tmux([sys.executable, "-m", "clients.chat", "--base-url", f"{fake.url}/v1", QUESTION])
    try:
        during = pane.wait_for(GUIDANCE)
        assert ANSWER not in during, "the answer was on the screen before the steps"
        assert "guidance: qwen-coder" in pane.wait_for("summary")
        final = pane.wait_for("EXIT=")
    finally:
        pane.close()
    assert "EXIT=0" in final, final
    lines = final.splitlines()
    at = {text: next(i for i, line in enumerate(lines) if text in line) for text in (GUIDANCE, ANSWER, "saving")}
    assert at[GUIDANCE] < at[ANSWER] < at["saving"], final
    assert "server alone" in final and "waiting for the router" not in final


def test_the_usage_table_shows_the_saving_against_the_server_alone(fake, capsys):
    assert main(["--base-url", f"{fake.url}/v1", QUESTION]) == 0
    out = capsys.readouterr().out
    request = fake.state.requests[-1]
    assert request["stream"] is True and request["colm"]["progress"] is True
    for step, text in PROGRESS:
        assert text.strip() in out, f"step {step} was not shown"
    assert out.index(GUIDANCE) < out.index(ANSWER) < out.index("server alone, estimated (USD)") \
        < out.index("saving, estimated (USD)")
    assert "%)" in out.split("saving, estimated (USD)")[1], "the saving's share of the server-alone cost"
    assert "estimated: the server alone was not asked" in out


def test_a_billed_baseline_carries_no_estimate_mark(capsys):
    usage = {"server_tokens": 5, "client_tokens": 9, "cost_usd": 0.001, "baseline_cost_usd": 0.004, "saving_usd": 0.003,
             "baseline_estimated": False}
    render_usage({"usage": usage}, Console(width=120))
    out = capsys.readouterr().out
    assert "server alone (USD)" in out and "saving (USD)" in out and "75%" in out
    assert "estimated" not in out


def test_no_progress_asks_for_none_and_shows_only_the_answer(fake, capsys):
    assert main(["--base-url", f"{fake.url}/v1", "--no-progress", QUESTION]) == 0
    out = capsys.readouterr().out
    assert fake.state.requests[-1]["colm"]["progress"] is False
    assert ANSWER in out and GUIDANCE not in out and "saving, estimated (USD)" in out
