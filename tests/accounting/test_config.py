"""AccountingConfig: which store, where; rejected when a Redis store has nowhere to go."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from colm_serve.accounting.stores import (
    STORES,
    MemoryStore,
    RedisStore,
    SqliteStore,
    build_store,
)
from colm_serve.config import AccountingConfig
from tests.fakes import app_args


def test_the_default_is_sqlite_under_the_colm_cache_and_every_app_has_one():
    config = app_args().accounting
    assert config.store == "sqlite" and config.path == Path.home() / ".cache" / "colm" / "ledger.sqlite3"
    assert isinstance(build_store(config), SqliteStore)
    assert set(STORES) == {"memory", "sqlite", "redis"}


@pytest.mark.parametrize(("raw", "message"), [
    ({"store": "redis"}, "needs `url` or `url_env`"),
    ({"store": "postgres"}, "store"),
    ({"store": "sqlite", "file": "/tmp/x"}, "Extra inputs are not permitted"),
    ({"store": "redis", "url": "redis://h", "key_prefix": ""}, "key_prefix"),
    ({"store": "sqlite", "cluster": True}, "`cluster` is for the redis store"),
])
def test_bad_accounting_configs_are_rejected(raw, message):
    with pytest.raises(ValidationError, match=message):
        AccountingConfig.model_validate(raw)


async def test_redis_url_from_an_environment_variable(monkeypatch):
    config = AccountingConfig(store="redis", url_env="COLM_TEST_REDIS_URL")
    with pytest.raises(ValueError, match="COLM_TEST_REDIS_URL is not set"):
        build_store(config)
    monkeypatch.setenv("COLM_TEST_REDIS_URL", "redis://127.0.0.1:1/0")
    store = build_store(config)
    assert isinstance(store, RedisStore)
    await store.aclose()


def test_memory_store_from_a_plain_dict():
    assert isinstance(build_store({"store": "memory"}), MemoryStore)
