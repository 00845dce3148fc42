"""Fixtures of the colm-eval tests: the fake OpenAI-compatible server (see fake_openai.py) and
the official benchmark tools' environment (see official/README.md)."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import pytest
import uvicorn

from tests.eval.fake_openai import FakeState, build_fake_app
from tests.eval.official_tools import official_python


@dataclass
class FakeServer:
    url: str
    state: FakeState


@pytest.fixture(scope="session")
def _fake_server():
    state = FakeState()
    server = uvicorn.Server(uvicorn.Config(build_fake_app(state), host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the fake OpenAI server did not start")
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    yield FakeServer(url=f"http://127.0.0.1:{port}/v1", state=state)
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture
def fake(_fake_server: FakeServer) -> FakeServer:
    """The shared fake server with a clean request log and no injected failures."""
    _fake_server.state.reset()
    return _fake_server


@pytest.fixture(scope="session")
def official() -> None:
    if not official_python().exists():
        pytest.fail(f"the official tools' environment {official_python()} is missing: run `make official-tools` "
                    "(make test does), or point COLM_OFFICIAL_PYTHON at it")
