"""Without API keys, made-up bearer tokens cannot grow labels (stats, budgets, metrics) without bound."""

from __future__ import annotations

import asyncio
from collections import defaultdict

import httpx

from colm_serve.accounting.ledger import Ledger
from colm_serve.accounting.stores import MemoryStore
from colm_serve.api.auth import Authenticator
from colm_serve.api.routes import create_api
from colm_serve.collab.selection import AllSelector
from colm_serve.config import AuthConfig, ServerConfig
from colm_serve.server_proxy.proxy import ServerProxy
from colm_serve.service import RouterService
from tests.fakes import FakeClient, app_args
from tests.reliability.conftest import ProxyUpstreams
from tests.upstream_sim import UpstreamSim

CAP = 16


def test_ten_thousand_tokens_make_at_most_the_cap_of_labels_and_each_keeps_its_own():
    auth = Authenticator(AuthConfig(anonymous_labels=CAP))
    labels = [auth.identify(f"Bearer sk-made-up-{i}").label for i in range(10_000)]
    assert len(set(labels)) == CAP
    assert auth.identify("Bearer sk-made-up-7").label == labels[7]  # stable: one app, one label


class TagSink:
    def __init__(self) -> None:
        self.tags: set[str] = set()

    def count(self, name, value, *, tags):
        self.tags.add(tags["client"])

    def gauge(self, name, value, *, tags):
        self.tags.add(tags["client"])


async def test_ten_thousand_callers_through_the_front_door_stay_within_the_cap():
    """10,000 requests with distinct tokens, through the HTTP API, the ledger and a real
    ServerProxy over real HTTP: labels in stats, in the ledger and in metric tags stay capped."""
    sink = TagSink()
    with UpstreamSim() as sim:
        args = app_args(auth={"anonymous_labels": CAP},
                        servers=[{"name": "a", "base_url": sim.url}, {"name": "b", "base_url": sim.url}])
        proxies = ProxyUpstreams({s.name: ServerProxy(ServerConfig.model_validate(s.model_dump()), metrics=sink)
                                  for s in args.servers})
        ledger = Ledger(args.budgets, MemoryStore())
        service = RouterService(args, upstreams=proxies, client=FakeClient(), ledger=ledger,
                                selectors={"llm": AllSelector(), "all": AllSelector(), "embedding": AllSelector()})
        transport = httpx.ASGITransport(app=create_api(service))
        async with httpx.AsyncClient(transport=transport, base_url="http://router", timeout=60) as http:
            gate = asyncio.Semaphore(64)
            statuses: dict[int, int] = defaultdict(int)

            async def ask(i: int) -> None:
                model = "server/conv" if i % 10 == 0 else "colm-client"  # a real upstream call for every tenth
                async with gate:
                    resp = await http.post("/v1/chat/completions", headers={"Authorization": f"Bearer sk-{i}"},
                                           json={"model": model, "messages": [{"role": "user", "content": "hi"}],
                                                 "max_tokens": 4})
                statuses[resp.status_code] += 1

            await asyncio.gather(*(ask(i) for i in range(10_000)))
            stats = (await http.get("/v1/colm/stats")).json()
        await proxies.aclose()
    assert statuses == {200: 10_000}
    assert len(stats["keys"]) <= CAP
    assert sum(row["requests"] for row in stats["keys"].values()) == 10_000
    assert len(sink.tags - {"_all"}) <= CAP
    assert all(len(s["keys"]) <= CAP for s in stats["servers"].values())
