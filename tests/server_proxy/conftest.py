"""A real upstream sim per test module (reset for each test) and ServerProxy builders."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest

from colm_serve.config import BreakerConfig, RetryPolicy, ServerConfig
from colm_serve.server_proxy.proxy import ServerProxy
from colm_serve.server_proxy.types import UpstreamCall
from tests.upstream_sim import UpstreamSim

FAST_RETRY = RetryPolicy(max_attempts=4, backoff_base_s=0.02, backoff_max_s=0.1, max_retry_after_s=5)


@pytest.fixture(scope="module")
def sim_server() -> Iterator[UpstreamSim]:
    with UpstreamSim() as sim:
        yield sim


@pytest.fixture
def sim(sim_server: UpstreamSim) -> UpstreamSim:
    sim_server.reset()
    return sim_server


def server_config(sim: UpstreamSim, **overrides: Any) -> ServerConfig:
    fields: dict[str, Any] = {
        "name": "sim",
        "base_url": sim.url,
        "timeout_s": 5.0,
        "retry": FAST_RETRY,
        "breaker": BreakerConfig(failure_threshold=50, window_s=30, reset_timeout_s=1),
    }
    return ServerConfig(**(fields | overrides))


def make_call(prompt: str = "What is 2+2?", **overrides: Any) -> UpstreamCall:
    fields: dict[str, Any] = {
        "server": "sim",
        "model": "sim-model",
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": 32,
        "price_in_per_m": 1.0,
        "price_out_per_m": 2.0,
    }
    return UpstreamCall(**(fields | overrides))


@pytest.fixture
async def proxy_for(sim: UpstreamSim) -> AsyncIterator[Callable[..., ServerProxy]]:
    """Build ServerProxies on the sim (server overrides as kwargs; `proxy_kw` for the ServerProxy)."""
    made: list[ServerProxy] = []

    def build(*, proxy_kw: dict[str, Any] | None = None, **overrides: Any) -> ServerProxy:
        proxy = ServerProxy(server_config(sim, **overrides), **(proxy_kw or {}))
        made.append(proxy)
        return proxy

    yield build
    for proxy in made:
        await proxy.aclose()
