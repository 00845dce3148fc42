"""The cluster store: Redis, which router replicas on every node reach.

Reserve and settle are Lua scripts (`redis_lua`), atomic in Redis. Keys, under `key_prefix`:
`{p}:day:{day}:{label}` (spent and reserved today; expires DAY_TTL_S after its last write, so
old days clean themselves up), `{p}:res:{id}` (one outstanding reservation, same TTL),
`{p}:rpm:{label}` (a sorted set of admission times: the sliding requests/min window),
`{p}:total:{label}` (all-time counters) and `{p}:labels`. Every key a script touches is
passed in KEYS; on Redis Cluster give `key_prefix` a hash tag (`{colm}`) so they share a slot.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import redis.asyncio as aioredis

from colm_serve.accounting.stores import base, redis_lua
from colm_serve.config import AccountingConfig, BudgetConfig

DAY_TTL_S = 2 * base.DAY_S  # today and yesterday: a reservation made before midnight settles after it


class RedisStore(base.BudgetStore):
    def __init__(self, client: aioredis.Redis, *, key_prefix: str) -> None:
        self._redis = client
        self._prefix = key_prefix
        self._reserve = client.register_script(redis_lua.RESERVE)
        self._settle = client.register_script(redis_lua.SETTLE)

    @classmethod
    def from_config(cls, config: AccountingConfig) -> RedisStore:
        return cls(aioredis.Redis.from_url(config.redis_url(), decode_responses=True), key_prefix=config.key_prefix)

    async def reserve(self, *, label: str, amounts: base.Amounts, limits: BudgetConfig, now: float) -> base.Reservation | base.Refusal:
        held = base.Reservation(id=uuid.uuid4().hex, label=label, day=base.day_of(now), **amounts.model_dump())
        reply = await self._reserve(
            keys=[self._key("rpm", label), self._day_key(held.day, label), self._key("res", held.id)],
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
        keys, args = [self._key("labels")], [DAY_TTL_S]
        for item in batch:
            held = item.reservation  # without one, the script skips its two keys: placeholders then
            keys += [self._key("res", held.id if held else "-"), self._day_key(held.day, held.label) if held else self._key("-"),
                     self._day_key(base.day_of(item.now), item.label), self._key("total", item.label)]
            added = base.increments(item)
            args += [item.label, "1" if held else "0", *(repr(added[f]) for f in base.TOTAL_FIELDS)]  # the script's order
        await self._settle(keys=keys, args=args)

    async def stats(self, *, now: float) -> dict[str, dict]:
        labels = sorted(await self._redis.smembers(self._key("labels")))
        async with self._redis.pipeline(transaction=True) as pipe:
            for label in labels:
                pipe.hgetall(self._key("total", label))
                pipe.hgetall(self._day_key(base.day_of(now), label))
            replies = await pipe.execute()
        return {label: base.stats_row(replies[2 * i], _day_use(replies[2 * i + 1])) for i, label in enumerate(labels)}

    async def aclose(self) -> None:
        await self._redis.aclose()

    def _key(self, *parts: str) -> str:
        return ":".join((self._prefix, *parts))

    def _day_key(self, day: int, label: str) -> str:
        return self._key("day", str(day), label)


def _limit(value: float | None) -> str:
    return "" if value is None else repr(value)


def _day_use(fields: dict[str, str]) -> base.DayUse:
    return base.DayUse(server_tokens=int(float(fields.get("server_tokens", 0))), cost_usd=float(fields.get("cost_usd", 0)))
