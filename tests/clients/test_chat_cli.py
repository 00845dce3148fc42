"""`colm-chat` against a router served over real HTTP (in-process router, fake engines)."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import pytest
import uvicorn

from clients.chat import main
from colm_serve.api.routes import create_api
from tests.api.test_routes import _service


@pytest.fixture(scope="module")
def router_url() -> Iterator[str]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(create_api(_service()), log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)  # thread start-up handshake in a sync fixture
    yield f"http://127.0.0.1:{sock.getsockname()[1]}/v1"
    server.should_exit = True
    thread.join(timeout=10)


def test_one_question_with_trace(router_url, capsys):
    assert main(["--base-url", router_url, "--trace", "--no-stream", "What is 2+2?"]) == 0
    out = capsys.readouterr().out
    assert "answer to:" in out
    assert "CoLM trace" in out and "guidance: math" in out and "round 1: iterations done (1)" in out
    assert "selector all picked math, conv, code, eye" in out


def test_streamed_answer(router_url, capsys):
    assert main(["--base-url", router_url, "--iterations", "0", "Name a colour."]) == 0
    assert "answer to:" in capsys.readouterr().out


def test_errors_are_reported_not_raised(router_url, capsys):
    assert main(["--base-url", router_url, "--model", "gpt-17", "hi"]) == 1
    assert "does not exist" in capsys.readouterr().out


def test_interactive_multi_turn_session(router_url):
    out = subprocess.run(
        [sys.executable, "-m", "clients.chat", "--base-url", router_url, "--no-stream"],
        input="first question\nsecond question\n\n", capture_output=True, text=True, timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.count("answer to:") == 2
