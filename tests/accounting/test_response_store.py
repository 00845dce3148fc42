"""Stored /v1/responses over every backend the ledger uses, each the real thing: two store
objects over one backing stand for two router replicas (one sqlite file, one Redis key prefix,
a Redis Cluster)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from colm_serve.accounting.conversations import (
    RESPONSE_STORES,
    MemoryResponses,
    ResponseStore,
    StoredResponse,
    build_response_store,
)
from colm_serve.accounting.stores import STORES, build_store
from tests.accounting.conftest import STORE_KINDS, store_config


def record(response_id: str = "resp_1", *, owner: str = "alice", ttl_s: float = 60.0) -> StoredResponse:
    output = [{"id": "msg_1", "type": "message", "role": "assistant", "status": "completed",
               "content": [{"type": "output_text", "text": "four", "annotations": []}]}]
    return StoredResponse(id=response_id, owner=owner, response={"id": response_id, "output": output},
                          history=[{"id": "msg_0", "type": "message", "role": "user", "content": "2+2?"}],
                          expires_at=time.time() + ttl_s)


@pytest.fixture(params=STORE_KINDS)
async def replicas(request: pytest.FixtureRequest, tmp_path: Path):
    """Two response stores over one backing, each over a ledger store of its own (as two
    replicas have); memory has one object to share."""
    config = store_config(request.param, tmp_path=tmp_path, request=request)
    if request.param == "memory":
        shared = MemoryResponses()
        yield shared, shared
        return
    ledgers = [build_store(config), build_store(config)]
    yield tuple(build_response_store(config, budget_store=ledger) for ledger in ledgers)
    for ledger in ledgers:
        await ledger.aclose()


def test_every_ledger_backend_has_a_response_store():
    assert set(RESPONSE_STORES) == set(STORES)


async def test_a_response_stored_on_one_replica_is_read_and_deleted_on_another(replicas):
    a, b = replicas
    await a.put(record())
    got = await b.get("resp_1", owner="alice", now=time.time())
    assert got is not None and got.conversation()[-1]["content"][0]["text"] == "four"
    assert [i["id"] for i in got.input_items()] == ["msg_0"]
    assert await b.delete("resp_1", owner="alice")
    assert await a.get("resp_1", owner="alice", now=time.time()) is None
    assert not await a.delete("resp_1", owner="alice")


async def test_another_owner_neither_reads_nor_deletes_it(replicas):
    a, b = replicas
    await a.put(record())
    assert await b.get("resp_1", owner="bob", now=time.time()) is None
    assert not await b.delete("resp_1", owner="bob")
    assert await a.get("resp_1", owner="alice", now=time.time()) is not None


async def test_an_expired_response_is_gone(replicas):
    a, b = replicas
    await a.put(record(ttl_s=0.3))
    assert await b.get("resp_1", owner="alice", now=time.time() + 1) is None
    assert await b.get("unknown", owner="alice", now=time.time()) is None


async def test_a_store_of_its_own_connection_closes_it(tmp_path: Path):
    config = store_config("sqlite", tmp_path=tmp_path, request=None)  # type: ignore[arg-type]
    store: ResponseStore = build_response_store(config)
    await store.put(record())
    assert await store.get("resp_1", owner="alice", now=time.time()) is not None
    await store.aclose()


@pytest.mark.parametrize("kind", ["sqlite", "redis"])
async def test_a_conversation_continues_through_another_replicas_api(kind, request: pytest.FixtureRequest, tmp_path: Path):
    """Two apps, each a RouterService over its own ledger store of one backing, as two replicas."""
    import httpx

    from colm_serve.accounting.ledger import Ledger
    from colm_serve.api.routes import create_api
    from colm_serve.collab.selection import AllSelector
    from colm_serve.service import RouterService
    from tests.fakes import FakeClient, FakeUpstreams, app_args

    config = store_config(kind, tmp_path=tmp_path, request=request)
    args = app_args(accounting=config.model_dump())
    fakes = [FakeClient(["Noted: 42."]), FakeClient(["You said 42."])]
    ledgers, apps = [], []
    for fake in fakes:
        ledger_store = build_store(config)
        ledgers.append(ledger_store)
        service = RouterService(args, ledger=Ledger(args.budgets, ledger_store), upstreams=FakeUpstreams(), client=fake,
                                selectors={"llm": AllSelector(), "all": AllSelector()},
                                responses=build_response_store(config, budget_store=ledger_store))
        apps.append(httpx.AsyncClient(transport=httpx.ASGITransport(app=create_api(service)), base_url="http://r"))
    try:
        first = (await apps[0].post("/v1/responses", json={"model": "colm-client", "input": "Remember 42."})).json()
        second = await apps[1].post("/v1/responses", json={"model": "colm-client", "input": "What number?",
                                                           "previous_response_id": first["id"]})
        assert second.status_code == 200, second.text
        assert [m["content"] for m in fakes[1].requests[0].messages] == ["Remember 42.", "Noted: 42.", "What number?"]
        assert (await apps[0].get(f"/v1/responses/{second.json()['id']}")).json()["output"][0]["content"][0]["text"] \
            == "You said 42."
    finally:
        for app in apps:
            await app.aclose()
        for ledger_store in ledgers:
            await ledger_store.aclose()
