"""The Redis store on a real three-master Redis Cluster: every script call touches keys of one
slot (a cluster refuses any other), labels spread over the nodes, and one settle batch may
hold labels of every node. The shared budget tests also run on the cluster (`redis-cluster`)."""

from __future__ import annotations

import uuid

import pytest
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.crc import key_slot
from redis.exceptions import ResponseError

from colm_serve.accounting.stores import RedisStore, build_store
from colm_serve.accounting.stores.base import Amounts, Refusal, Reservation, Settlement
from colm_serve.config import BudgetConfig
from colm_serve.protocol.usage import Usage

NOW = 1_000_000_000.0
LIMITS = BudgetConfig(server_tokens_per_day=1000)


class RecordingCluster(RedisCluster):
    """A real cluster client that notes the keys of every script call."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.script_keys: list[list[str]] = []

    async def evalsha(self, sha, numkeys, *keys_and_args):
        self.script_keys.append(list(keys_and_args[:numkeys]))
        return await super().evalsha(sha, numkeys, *keys_and_args)


@pytest.fixture
async def cluster(redis_cluster_url: str):
    client = RecordingCluster.from_url(redis_cluster_url, decode_responses=True)
    store = RedisStore(client, key_prefix=f"t{uuid.uuid4().hex}")
    yield client, store
    await store.aclose()


def _slots(keys: list[str]) -> set[int]:
    return {key_slot(key.encode()) for key in keys}


async def _labels_on_every_node(client: RecordingCluster, store: RedisStore) -> dict[str, Reservation]:
    """Reserve for app-0, app-1, ... until one label on each of the three masters holds 600 tokens."""
    held: dict[str, Reservation] = {}
    nodes = set()
    for label in (f"app-{i}" for i in range(100)):
        got = await store.reserve(label=label, amounts=Amounts(server_tokens=600), limits=LIMITS, now=NOW)
        assert isinstance(got, Reservation)
        node = client.get_node_from_key(client.script_keys[-1][0]).name
        if node not in nodes:
            nodes.add(node)
            held[label] = got
        if len(nodes) == 3:
            return held
    pytest.fail(f"100 labels all hashed to {nodes}")


async def test_every_script_call_touches_one_slot_where_the_old_layout_spanned_several(cluster, redis_cluster_url):
    client, store = cluster
    held = await _labels_on_every_node(client, store)
    batch = [Settlement(reservation=r, label=label, usage=Usage(server_prompt_tokens=100), now=NOW) for label, r in held.items()]
    batch += [Settlement(label=label, usage=Usage(server_prompt_tokens=5), now=NOW, requests=0) for label in held]
    await store.settle(batch)
    assert client.script_keys and all(len(_slots(keys)) == 1 for keys in client.script_keys)

    # The layout before hash tags: one reservation's keys on several slots, which a cluster refuses.
    label, reservation = next(iter(held.items()))
    old = [f"colm:rpm:{label}", f"colm:day:{reservation.day}:{label}", f"colm:res:{reservation.id}"]
    assert len(_slots(old)) > 1
    node = aioredis.Redis.from_url(redis_cluster_url)
    try:
        with pytest.raises(ResponseError, match="don.t hash to the same slot"):  # CROSSSLOT
            await node.eval("return 1", len(old), *old)
    finally:
        await node.aclose()


async def test_labels_on_three_nodes_settle_in_one_batch(cluster):
    client, store = cluster
    held = await _labels_on_every_node(client, store)
    client.script_keys.clear()
    batch = [Settlement(reservation=r, label=label, usage=Usage(server_prompt_tokens=100), now=NOW) for label, r in held.items()]
    batch += [Settlement(label=label, usage=Usage(server_prompt_tokens=50), now=NOW, requests=0) for label in held]
    await store.settle(batch)
    assert len({client.get_node_from_key(keys[0]).name for keys in client.script_keys}) == 3

    stats = await store.stats(now=NOW)
    for label in held:
        row = stats[label]
        assert (row["requests"], row["server_tokens"], row["server_tokens_today"]) == (1, 150, 150)
        # 150 spent + 850 fits 1000 only if the settle released the 600 reserved
        assert isinstance(await store.reserve(label=label, amounts=Amounts(server_tokens=850), limits=LIMITS, now=NOW),
                          Reservation)
        assert isinstance(await store.reserve(label=label, amounts=Amounts(server_tokens=1), limits=LIMITS, now=NOW),
                          Refusal)


async def test_a_batch_retried_after_a_partial_failure_counts_a_reserved_request_once(cluster):
    """A cluster writes a batch per slot; when one part fails the ledger retries all of it."""
    client, store = cluster
    held = await _labels_on_every_node(client, store)
    batch = [Settlement(reservation=r, label=label, usage=Usage(server_prompt_tokens=100), now=NOW) for label, r in held.items()]
    await store.settle(batch)
    await store.settle(batch)  # the retry: every part had landed this time
    stats = await store.stats(now=NOW)
    assert {label: (stats[label]["requests"], stats[label]["server_tokens_today"]) for label in held} == \
        dict.fromkeys(held, (1, 100))


async def test_cluster_in_the_config_builds_a_cluster_client_lazily():
    store = build_store({"store": "redis", "url": "redis://127.0.0.1:1", "cluster": True})  # nothing listens there
    assert isinstance(store, RedisStore)
    await store.aclose()
