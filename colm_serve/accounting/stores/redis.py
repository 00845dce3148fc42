"""The shared store: Redis, one server or a Redis Cluster, which router replicas on every node reach.

Reserve and settle are Lua scripts (`redis_lua`), atomic in Redis. A label's keys share the
hash tag `{p:label}` (`p` is `key_prefix`), so on a cluster each script call touches one slot,
one node, and labels spread over the nodes: `{p:label}:day:{day}` (spent and reserved that day;
expires DAY_TTL_S after its last write, so old days clean themselves up), `{p:label}:res:{id}`
(one outstanding reservation, same TTL), `{p:label}:rpm` (a sorted set of admission times: the
sliding requests/min window) and `{p:label}:total` (all-time counters). `p:labels`, the set of
labels, is written by its own SADD, which a retry repeats harmlessly.

A settle batch is one script call per slot: on one server that is the whole batch, atomic; on
a cluster each slot's part is atomic on its own, and a failure elsewhere makes the ledger
retry the whole batch. A settled reservation therefore leaves a marker (SETTLED_TTL_S) that
makes a retried settlement of it a no-op; spend recorded without a reservation, in a part
that had landed, is counted again.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Sequence

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster

from colm_serve.accounting.stores import base, redis_lua
from colm_serve.config import AccountingConfig, BudgetConfig

DAY_TTL_S = 2 * base.DAY_S  # today and yesterday: a reservation made before midnight settles after it
SETTLED_TTL_S = 3600  # the ledger retries a failed batch within seconds; an hour of markers stays small


class RedisStore(base.BudgetStore):
    def __init__(self, client: aioredis.Redis | RedisCluster, *, key_prefix: str) -> None:
        self._redis = client
        self._cluster = isinstance(client, RedisCluster)
        self._prefix = key_prefix
        self._reserve = client.register_script(redis_lua.RESERVE)
        self._settle = client.register_script(redis_lua.SETTLE)

    @property
    def client(self) -> aioredis.Redis | RedisCluster:
        """The connection, for other records kept beside the budgets (stored responses)."""
        return self._redis

    @property
    def key_prefix(self) -> str:
        return self._prefix

    @classmethod
    def from_config(cls, config: AccountingConfig) -> RedisStore:
        client_cls = RedisCluster if config.cluster else aioredis.Redis
        return cls(client_cls.from_url(config.redis_url(), decode_responses=True), key_prefix=config.key_prefix)

    async def reserve(self, *, label: str, amounts: base.Amounts, limits: BudgetConfig, now: float) -> base.Reservation | base.Refusal:
        held = base.Reservation(id=uuid.uuid4().hex, label=label, day=base.day_of(now), **amounts.model_dump())
        reply = await self._reserve(
            keys=[self._key(label, "rpm"), self._day_key(label, held.day), self._key(label, "res", held.id)],
            args=[repr(now), held.server_tokens, repr(held.cost_usd), *(_limit(v) for v in (
                limits.requests_per_min, limits.server_tokens_per_day, limits.cost_usd_per_day)),
                held.id, DAY_TTL_S, base.RATE_WINDOW_S],
        )
        if reply[0] == "ok":
            return held
        if reply[0] == "requests_per_min":
            refusal = base.rate_refusal(count=int(reply[1]), oldest=float(reply[2]), limits=limits, now=now)
        else:
            today = base.DayUse(server_tokens=int(float(reply[1])), cost_usd=float(reply[2]),
                           reserved_tokens=int(float(reply[3])), reserved_cost=float(reply[4]))
            refusal = base.day_refusal(today=today, amounts=amounts, limits=limits, now=now)
        if refusal is None:
            raise RuntimeError(f"redis refused a reservation that the same figures admit: {reply!r}")
        return refusal

    async def settle(self, batch: Sequence[base.Settlement]) -> None:
        if not batch:
            return
        parts: dict[int, list[base.Settlement]] = defaultdict(list)
        for item in batch:
            parts[self._redis.keyslot(self._tag(item.label)) if self._cluster else 0].append(item)
        labels = sorted({item.label for item in batch})
        await _all([self._redis.sadd(self._labels_key(), *labels), *(self._settle_part(p) for p in parts.values())])

    async def stats(self, *, now: float) -> dict[str, dict]:
        labels = sorted(await self._redis.smembers(self._labels_key()))
        # One snapshot on one server; on a cluster the labels live on several nodes, read one by one.
        async with self._redis.pipeline(transaction=not self._cluster) as pipe:
            for label in labels:
                pipe.hgetall(self._key(label, "total"))
                pipe.hgetall(self._day_key(label, base.day_of(now)))
            replies = await pipe.execute()
        return {label: base.stats_row(replies[2 * i], _day_use(replies[2 * i + 1])) for i, label in enumerate(labels)}

    async def aclose(self) -> None:
        await self._redis.aclose()

    async def _settle_part(self, part: list[base.Settlement]) -> None:
        """One script call over settlements whose keys share a slot."""
        keys, args = [], [DAY_TTL_S, SETTLED_TTL_S]
        for item in part:
            held = item.reservation  # without one, the script skips its two keys: placeholders in the slot
            keys += [self._key(held.label, "res", held.id) if held else self._key(item.label, "-"),
                     self._day_key(held.label, held.day) if held else self._key(item.label, "-"),
                     self._day_key(item.label, base.day_of(item.now)), self._key(item.label, "total")]
            added = base.increments(item)
            args += ["1" if held else "0", *(repr(added[f]) for f in base.TOTAL_FIELDS)]  # the script's order
        await self._settle(keys=keys, args=args)

    def _tag(self, label: str) -> str:
        return f"{{{self._prefix}:{label}}}"

    def _key(self, label: str, *parts: str) -> str:
        return ":".join((self._tag(label), *parts))

    def _day_key(self, label: str, day: int) -> str:
        return self._key(label, "day", str(day))

    def _labels_key(self) -> str:
        return f"{self._prefix}:labels"


async def _all(calls: Sequence[Awaitable[object]]) -> None:
    """Await every call to its end, then raise the first failure: a retry starts from a settled state."""
    for result in await asyncio.gather(*calls, return_exceptions=True):
        if isinstance(result, BaseException):
            raise result


def _limit(value: float | None) -> str:
    return "" if value is None else repr(value)


def _day_use(fields: dict[str, str]) -> base.DayUse:
    return base.DayUse(server_tokens=int(float(fields.get("server_tokens", 0))), cost_usd=float(fields.get("cost_usd", 0)))
