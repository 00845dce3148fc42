"""Stored responses in the ledger's Redis (one server or a Cluster), over the ledger store's own
client: one key per response, `{p:resp:<id>}` (`p` is `key_prefix`), a JSON string that Redis
expires by itself. Each call touches one key, so on a Cluster it goes to the one node that owns
the key's slot."""

from __future__ import annotations

import math
import time

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster

from colm_serve.accounting.conversations.base import ResponseStore, StoredResponse
from colm_serve.accounting.stores.base import BudgetStore
from colm_serve.accounting.stores.redis import RedisStore
from colm_serve.config import AccountingConfig


class RedisResponses(ResponseStore):
    def __init__(self, client: aioredis.Redis | RedisCluster, *, key_prefix: str, owned: RedisStore | None = None) -> None:
        self._redis = client
        self._prefix = key_prefix
        self._owned = owned

    @classmethod
    def over(cls, budget_store: BudgetStore | None, config: AccountingConfig) -> RedisResponses:
        owned = None
        if budget_store is None:
            budget_store = owned = RedisStore.from_config(config)
        if not isinstance(budget_store, RedisStore):
            raise TypeError(f"the redis responses store needs the redis ledger store, not {type(budget_store).__name__}")
        return cls(budget_store.client, key_prefix=budget_store.key_prefix, owned=owned)

    async def put(self, record: StoredResponse) -> None:
        ttl_ms = max(1, math.ceil((record.expires_at - time.time()) * 1000))
        await self._redis.set(self._key(record.id), record.model_dump_json(), px=ttl_ms)

    async def get(self, response_id: str, *, owner: str, now: float) -> StoredResponse | None:
        raw = await self._redis.get(self._key(response_id))
        if raw is None:
            return None
        record = StoredResponse.model_validate_json(raw)
        return record if record.owner == owner and record.expires_at > now else None

    async def delete(self, response_id: str, *, owner: str) -> bool:
        if await self.get(response_id, owner=owner, now=time.time()) is None:
            return False
        return bool(await self._redis.delete(self._key(response_id)))

    async def aclose(self) -> None:
        if self._owned is not None:
            await self._owned.aclose()

    def _key(self, response_id: str) -> str:
        return f"{{{self._prefix}:resp:{response_id}}}"
