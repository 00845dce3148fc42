"""Keys never leak: not into logs (DEBUG, every logger), response or error bodies, SSE
streams, stats, traces, metric labels, or upstream requests.

The router runs in-process with client API keys configured and real ServerProxies that talk
HTTP to the upstream sim, which demands its own key and (like some providers) echoes a
wrong key back in its 401 message. The upstream keys are deliberately not key-shaped, so
only exact redaction of our own keys can catch them, not the pattern for `sk-...`.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator

import pytest

from colm_serve.api.auth import Authenticator, hash_key
from colm_serve.config import AuthConfig
from colm_serve.config import ServerConfig
from colm_serve.server_proxy.proxy import ServerProxy
from tests.fakes import FakeClient, app_args
from tests.reliability.conftest import ProxyUpstreams, asgi_client, router_service
from tests.upstream_sim import Fault, UpstreamSim

CLIENT_KEY = "sk-colm-app-9f8e7d6c5b4a3210SECRET"
WRONG_CLIENT_KEY = "sk-colm-app-0000WRONG1111SECRET"
UPSTREAM_KEY = "upk_live_7Qm2Xr9LwT4zN8aBsecret"
STALE_UPSTREAM_KEY = "upk_live_STALE00expired11secret"
SECRETS = (CLIENT_KEY, WRONG_CLIENT_KEY, UPSTREAM_KEY, STALE_UPSTREAM_KEY)
APP = "app-one"
QUESTION = [{"role": "user", "content": "What is 2 + 2?"}]


class RecordingSink:
    """A MetricsSink that keeps every tag set it was given."""

    def __init__(self) -> None:
        self.tags: list[dict[str, str]] = []

    def count(self, name: str, value: float, *, tags: dict[str, str]) -> None:
        self.tags.append(dict(tags))

    def gauge(self, name: str, value: float, *, tags: dict[str, str]) -> None:
        self.tags.append(dict(tags))


@pytest.fixture
def sim() -> Iterator[UpstreamSim]:
    with UpstreamSim(api_key=UPSTREAM_KEY) as server:
        yield server


@pytest.fixture
def keys_in_env(monkeypatch) -> None:
    monkeypatch.setenv("COLM_TEST_UPSTREAM_KEY", UPSTREAM_KEY)
    monkeypatch.setenv("COLM_TEST_STALE_KEY", STALE_UPSTREAM_KEY)


def _servers(sim: UpstreamSim) -> list[dict]:
    fast = {"max_attempts": 2, "backoff_base_s": 0.01, "backoff_max_s": 0.02}
    tolerant = {"failure_threshold": 100}  # the injected faults must not open the breaker
    # Server a holds the right key; server b a stale one, which the sim echoes in its 401.
    return [
        {"name": "a", "base_url": sim.url, "api_key_env": "COLM_TEST_UPSTREAM_KEY", "retry": fast, "breaker": tolerant, "timeout_s": 5},
        {"name": "b", "base_url": sim.url, "api_key_env": "COLM_TEST_STALE_KEY", "retry": fast, "breaker": tolerant, "timeout_s": 5},
    ]


@pytest.fixture
async def upstreams(sim, keys_in_env) -> AsyncIterator[tuple[ProxyUpstreams, RecordingSink]]:
    sink = RecordingSink()
    proxies = {s["name"]: ServerProxy(ServerConfig.model_validate(s), metrics=sink) for s in _servers(sim)}
    ups = ProxyUpstreams(proxies)
    yield ups, sink
    await ups.aclose()


def _service(sim: UpstreamSim, ups: ProxyUpstreams, *, auth: bool = True):
    keys = {"keys": [{"name": APP, "key_sha256": hash_key(CLIENT_KEY), "weight": 1}]} if auth else {}
    args = app_args(servers=_servers(sim), auth=keys, selection={"strategy": "all", "top_k": 4})
    return router_service(args, upstreams=ups, client=FakeClient())


async def _exercise(http, sim: UpstreamSim) -> list[str]:
    """Every kind of request and answer, successes and failures; returns all the text seen."""
    auth = {"Authorization": f"Bearer {CLIENT_KEY}"}
    colm = {"model": "colm", "messages": QUESTION, "colm": {"trace": True, "selector": "all", "top_k": 4, "cache": False}}
    seen = []
    # Upstream a also answers one 500 that quotes our key back.
    sim.set_faults(by_model={"m-math": Fault.error(500, message=f"internal failure for key {UPSTREAM_KEY}")})
    for body in (
        colm,
        {**colm, "stream": True, "stream_options": {"include_usage": True}},
        {"model": "server/code", "messages": QUESTION},  # on b: 401 with the stale key echoed
        {"model": "server/math", "messages": QUESTION},  # on a: 500 quoting the key
        {"model": "server/conv", "messages": QUESTION, "stream": True},
        {"model": "colm-client", "messages": QUESTION},
    ):
        resp = await http.post("/v1/chat/completions", json=body, headers=auth)
        seen += [f"{resp.status_code} {resp.text}", str(dict(resp.headers))]
    for headers in ({"Authorization": f"Bearer {WRONG_CLIENT_KEY}"}, {"Authorization": WRONG_CLIENT_KEY}, {}):
        resp = await http.post("/v1/chat/completions", json=colm, headers=headers)
        assert resp.status_code == 401
        seen.append(resp.text)
    stats = await http.get("/v1/colm/stats", headers=auth)
    assert stats.status_code == 200 and APP in stats.json()["keys"]
    seen.append(stats.text)
    return seen


def _leaks(texts: list[str]) -> list[str]:
    return [f"{secret} in {text[:200]!r}" for text in texts for secret in SECRETS if secret in text]


# Loggers that see requests; each is set to DEBUG by name, since a CLI run earlier in the same
# session (colm-eval, Locust's hooks) may have quieted one of them to WARNING.
LOGGERS = ("", "colm_serve", "openai", "httpx", "httpx2", "httpcore", "aiohttp", "uvicorn", "fastapi")


async def test_no_key_reaches_logs_bodies_streams_stats_or_traces(sim, upstreams, caplog):
    for name in LOGGERS:
        caplog.set_level(logging.DEBUG, logger=name or None)
    ups, _ = upstreams
    async with asgi_client(_service(sim, ups)) as http:
        seen = await _exercise(http, sim)
    statuses = [int(s.split()[0]) for s in seen if s[:3].isdigit()]
    assert statuses == [200, 200, 502, 502, 200, 200], seen  # the failures really happened
    assert "upstream answered 401" in seen[4] and "upstream answered 500" in seen[6]
    logs = [caplog.text] + [r.getMessage() for r in caplog.records]
    assert len(caplog.records) > 10, "DEBUG logging was not captured"
    assert not _leaks(seen + logs)


async def test_the_client_key_never_goes_upstream(sim, upstreams):
    ups, _ = upstreams
    async with asgi_client(_service(sim, ups)) as http:
        await _exercise(http, sim)
    bodies = [str(r.body) for r in sim.stats.log]
    assert bodies and not _leaks(bodies)


async def test_metric_labels_are_client_labels_never_keys(sim, upstreams):
    ups, sink = upstreams
    async with asgi_client(_service(sim, ups)) as http:
        await _exercise(http, sim)
    servers = {tags["server"] for tags in sink.tags}
    clients = {tags["client"] for tags in sink.tags}
    assert servers == {"a", "b"} and clients == {APP, "_all"}


async def test_open_mode_labels_a_key_by_a_digest_bucket_not_the_key(sim, upstreams):
    ups, sink = upstreams
    async with asgi_client(_service(sim, ups, auth=False)) as http:
        resp = await http.post("/v1/chat/completions", json={"model": "server/conv", "messages": QUESTION},
                               headers={"Authorization": f"Bearer {CLIENT_KEY}"})
        stats = await http.get("/v1/colm/stats")
    assert resp.status_code == 200
    label = Authenticator(AuthConfig()).anonymous_label(CLIENT_KEY)
    assert label.startswith("anon-") and hash_key(CLIENT_KEY)[:8] not in label
    assert {tags["client"] for tags in sink.tags} <= {label, "_all"}
    assert label in stats.json()["keys"] and not _leaks([stats.text, resp.text, str(sink.tags)])
