"""The Redis StateStore passes the same contract as the in-memory one, on a real redis-server,
and tells a fence from a connection lost in the middle of a commit."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import redis
import redis.asyncio as aioredis

from app.io.redis_store import RedisKeys, RedisStateStore, _Part, journal_key
from app.settings import Settings
from app.store import Fenced
from tests.store_contract import (
    check_journal_contract,
    check_models_contract,
    check_store_contract,
)


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
        store = RedisStateStore(aioredis.Redis.from_url(url), prefix=prefix + "m", ttl_seconds=60)
        try:
            await check_models_contract(store)
        finally:
            await store.close()

    asyncio.run(run())
    client = redis.Redis.from_url(url)
    ttl = client.ttl(RedisKeys(prefix).customer(0, "a"))
    assert 0 < ttl <= 3600  # idle customer state expires
    client.delete(*client.keys(f"*{prefix}*"))


def test_redis_journal_contract(base_settings: Settings) -> None:
    url = base_settings.redis_url.get_secret_value()
    prefix = f"tact-test:{uuid.uuid4().hex[:8]}"
    client = redis.Redis.from_url(url)

    def entries(partition: int) -> list[bytes]:
        return [data[b"changes"] for _, data in client.xrange(journal_key(prefix, partition))]

    async def run() -> None:
        store = RedisStateStore(aioredis.Redis.from_url(url), prefix=prefix, ttl_seconds=3600)
        try:
            await check_journal_contract(store, entries)
        finally:
            await store.close()

    asyncio.run(run())
    client.delete(*client.keys(f"*{prefix}*"))


Hook = Callable[[aioredis.Redis, str], Awaitable[object]]


def interrupted_commit(settings: Settings, hook: Hook) -> dict[str, Any]:
    """A fenced commit of one customer and one offset, `hook(other client, key prefix)` run
    once just before its script is sent. What was written, whether it was fenced, and whether
    the hook ran."""
    url = settings.redis_url.get_secret_value()
    prefix = f"tact-test:{uuid.uuid4().hex[:8]}"
    found: dict[str, Any] = {"ran": False, "fenced": None}

    async def run() -> None:
        client = aioredis.Redis.from_url(url)
        other = aioredis.Redis.from_url(url)
        store = RedisStateStore(client, prefix=prefix, ttl_seconds=3600)
        try:
            epochs = await store.claim([0])
            script = store._commit_script

            async def interrupting(**kwargs: Any) -> Any:
                if not found["ran"]:
                    found["ran"] = True
                    await hook(other, prefix)
                return await script(**kwargs)

            store._commit_script = interrupting  # type: ignore[assignment]
            try:
                await store.commit({"a": (0, b"state")}, {"clickstream:0": 5}, {}, None, epochs)
            except Fenced as exc:
                found["fenced"] = exc
            store._commit_script = script
            found["offsets"] = await store.load_offsets([0])
            found["customers"] = await store.load_customers({"a": 0})
        finally:
            await store.close()
            await other.aclose()

    try:
        asyncio.run(run())
    finally:
        client = redis.Redis.from_url(url)
        client.delete(*client.keys(f"*{prefix}*"))
    assert found["ran"], "the hook never ran: the test did not test anything"
    return found


async def lose(other: aioredis.Redis, prefix: str) -> None:
    raise redis.exceptions.ConnectionError("the connection went before the script was sent")


def test_a_connection_lost_before_a_fenced_commit_is_retried_not_taken_for_a_fence(
    base_settings: Settings,
) -> None:
    """The commit's connection is lost before its script reaches Redis (redis-py itself
    reconnects when the server has closed an idle one; here the error reaches the store):
    the commit is written once Redis answers, not taken for a fence (a lone worker that
    thought itself a zombie would drop its batch and wait two minutes for a reassignment
    that never comes)."""
    found = interrupted_commit(base_settings, lose)
    assert found["fenced"] is None
    assert found["offsets"] == {"clickstream:0": 5}
    assert found["customers"] == {"a": b"state"}


def test_an_epoch_claimed_before_the_write_fences_the_commit(base_settings: Settings) -> None:
    """Another worker claims the partition after this one did and just before its commit:
    the script finds the epoch moved, and the commit is fenced with nothing written."""

    async def claim(other: aioredis.Redis, prefix: str) -> None:
        await other.incr(RedisKeys(prefix).epoch(0))

    found = interrupted_commit(base_settings, claim)
    assert isinstance(found["fenced"], Fenced)
    assert "0 (epoch 1, now 2)" in str(found["fenced"])
    assert found["offsets"] == {} and found["customers"] == {}


def test_redis_cluster_store_contract(redis_cluster_url: str) -> None:
    """On a three-node Redis Cluster: the same contract, each partition's keys in one slot
    (a commit of several partitions is one transaction per partition); no models (a
    learner writes them there)."""
    prefix = f"tact-test:{uuid.uuid4().hex[:8]}"
    client = redis.RedisCluster.from_url(redis_cluster_url)

    def entries(partition: int) -> list[bytes]:
        return [data[b"changes"] for _, data in client.xrange(journal_key(prefix, partition))]

    async def run() -> None:
        cluster: Any = aioredis.RedisCluster.from_url(redis_cluster_url)
        store = RedisStateStore(cluster, prefix=prefix, ttl_seconds=3600)
        try:
            await check_store_contract(store)
            await check_journal_contract(store, entries)
            with pytest.raises(ValueError, match="learner"):
                await store.commit({}, {"clickstream:0": 20}, {"core": b"m"})
            # one partition's commit is one script: fenced as a whole...
            epochs = await store.claim([9])
            await store.claim([9])
            with pytest.raises(Fenced, match="9"):
                await store.commit({"q": (9, b"1")}, {"clickstream:9": 1}, {}, None, epochs)
            assert await store.load_customers({"q": 9}) == {}
            assert await store.load_offsets([9]) == {}
            # ...and, tried again after it ran (its reply lost), not written twice
            part = _Part()
            part.offsets, part.journal = {"clickstream:11": 3}, b'[["view"]]'
            for _ in range(2):
                await store._commit_group([(11, part)], {}, {}, "the same commit")
            assert entries(11) == [b'[["view"]]']
        finally:
            await store.close()

    asyncio.run(run())
    keys = [k.decode() for k in client.scan_iter(match=f"*{prefix}*")]
    tags = {k[: k.index("}") + 1] for k in keys}
    # every key is tagged: one partition's, or the learner's
    assert tags <= {f"{{{prefix}:p{p}}}" for p in range(12)} | {f"{{{prefix}}}"}, tags
    assert {RedisKeys(prefix).customer(0, "a"), RedisKeys(prefix).offsets(0)} <= set(keys)
    nodes = {client.get_node_from_key(f"{{{prefix}:p{p}}}").name for p in range(8)}
    assert len(nodes) > 1  # (the partitions' keys are spread over the nodes)
    for key in keys:
        client.delete(key)


def test_a_commit_whose_reply_was_lost_journals_once(base_settings: Settings) -> None:
    """The script runs but its reply is lost (the connection drops): the commit is tried
    again and must not add the journal entries twice, also for a partition with no offsets
    in the commit (its windows closed by another partition's time)."""
    url = base_settings.redis_url.get_secret_value()
    prefix = f"tact-test:{uuid.uuid4().hex[:8]}"
    lost: list[bool] = []

    async def run() -> None:
        client = aioredis.Redis.from_url(url)
        store = RedisStateStore(client, prefix=prefix, ttl_seconds=3600)
        script = store._commit_script

        async def losing(**kwargs: Any) -> Any:
            done = await script(**kwargs)
            if not lost:
                lost.append(True)
                raise redis.exceptions.ConnectionError("the reply was lost")
            return done

        store._commit_script = losing  # type: ignore[assignment]
        try:
            journal = {2: b'[["view"]]', 7: b'[["settle"]]'}
            await store.commit({"a": (2, b"s")}, {"clickstream:2": 4}, {}, journal=journal)
        finally:
            await store.close()

    asyncio.run(run())
    client = redis.Redis.from_url(url)
    try:
        assert lost, "no reply was lost: the test did not test anything"
        for partition, entry in ((2, b'[["view"]]'), (7, b'[["settle"]]')):
            found = [d[b"changes"] for _, d in client.xrange(journal_key(prefix, partition))]
            assert found == [entry]
        assert client.get(RedisKeys(prefix).customer(2, "a")) == b"s"
    finally:
        client.delete(*client.keys(f"*{prefix}*"))
