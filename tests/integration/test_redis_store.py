"""The Redis StateStore passes the same contract as the in-memory one, on a real redis-server."""

from __future__ import annotations

import asyncio
import uuid

import redis
import redis.asyncio as aioredis

from app.io.redis_store import RedisStateStore
from app.settings import Settings
from tests.store_contract import check_store_contract


def test_redis_store_contract(base_settings: Settings) -> None:
    url = base_settings.redis_url.get_secret_value()
    prefix = f"tact-test:{uuid.uuid4().hex[:8]}"

    async def run() -> None:
        store = RedisStateStore(aioredis.Redis.from_url(url), prefix=prefix, ttl_seconds=3600)
        try:
            await store.ping()
            await check_store_contract(store)
        finally:
            await store.close()

    asyncio.run(run())
    client = redis.Redis.from_url(url)
    ttl = client.ttl(f"{prefix}:c:a")
    assert 0 < ttl <= 3600  # idle customer state expires
    client.delete(*client.keys(f"{prefix}:*"))
