"""The Redis StateStore passes the same contract as the in-memory one, on a real redis-server."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

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


def test_a_connection_lost_during_a_fenced_commit_is_retried_not_taken_for_a_fence(
    base_settings: Settings,
) -> None:
    """redis-py reports a connection lost while keys are WATCHed as a WatchError, as if the
    keys had moved. A lone worker whose Redis went away mid-commit took itself for a zombie:
    it dropped its batch and waited two minutes for a reassignment that never came. The
    connection here is killed by the server (CLIENT KILL) between the WATCH and the check."""
    url = base_settings.redis_url.get_secret_value()
    prefix = f"tact-test:{uuid.uuid4().hex[:8]}"
    killed: list[int] = []

    async def run() -> None:
        client = aioredis.Redis.from_url(url)
        killer = aioredis.Redis.from_url(url)
        store = RedisStateStore(client, prefix=prefix, ttl_seconds=3600)
        try:
            epochs = await store.claim([0])
            pipeline = client.pipeline

            def killed_once(*args: Any, **kwargs: Any) -> Any:
                pipe = pipeline(*args, **kwargs)
                mget = pipe.mget

                async def mget_after_kill(*keys: Any) -> Any:
                    if not killed:  # the WATCH is on: end this connection from the server
                        killed.append(int(await pipe.execute_command("CLIENT", "ID")))
                        await killer.client_kill_filter(_id=str(killed[0]))
                    return await mget(*keys)

                pipe.mget = mget_after_kill
                return pipe

            client.pipeline = killed_once  # type: ignore[method-assign]
            await store.commit({"a": b"state"}, {"clickstream:0": 5}, {}, None, epochs)
            assert await store.load_offsets() == {"clickstream:0": 5}
            assert await store.load_customers(["a"]) == {"a": b"state"}
        finally:
            await store.close()
            await killer.aclose()

    asyncio.run(run())
    assert killed, "the connection was never killed: the test did not test anything"
    client = redis.Redis.from_url(url)
    client.delete(*client.keys(f"{prefix}:*"))
