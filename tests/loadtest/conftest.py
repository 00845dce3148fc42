"""Fixtures for the load-test tests: a fake CoLM server on an ephemeral loopback port."""

from __future__ import annotations

import socket
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

import pytest
import uvicorn

from tests.loadtest.fake_colm_server import RATE_LIMITED_KEY, FakeColm, build_app


@dataclass
class RunningFake:
    url: str
    state: FakeColm


@contextmanager
def running_fake() -> Iterator[RunningFake]:
    """Real HTTP (uvicorn in a thread), so the SDK and Locust talk to it as to the app."""
    state = FakeColm(rate_limited_keys=frozenset({RATE_LIMITED_KEY}))
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(build_app(state), log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the fake CoLM server did not start")
        time.sleep(0.02)  # a plain thread handshake in a sync fixture, not async code
    try:
        yield RunningFake(url=f"http://127.0.0.1:{port}", state=state)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


@pytest.fixture
def fake_colm() -> Iterator[RunningFake]:
    with running_fake() as fake:
        yield fake


@pytest.fixture(scope="module")
def fake_colm_module() -> Iterator[RunningFake]:
    """One server for a module whose tests share one (slow) Locust run."""
    with running_fake() as fake:
        yield fake
