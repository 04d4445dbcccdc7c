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


Hook = Callable[[aioredis.Redis, int, str], Awaitable[object]]


def interrupted_commit(settings: Settings, at: str, hook: Hook) -> dict[str, Any]:
    """A fenced commit of one customer and one offset, `hook(other client, the commit's
    connection id, key prefix)` run once on the way: just before the commit checks the
    epochs it WATCHes (`at="check"`) or just before its EXEC (`at="exec"`). What was written,
    whether it was fenced, and whether the hook ran."""
    url = settings.redis_url.get_secret_value()
    prefix = f"tact-test:{uuid.uuid4().hex[:8]}"
    found: dict[str, Any] = {"ran": False, "fenced": None}

    async def run() -> None:
        client = aioredis.Redis.from_url(url)
        other = aioredis.Redis.from_url(url)
        store = RedisStateStore(client, prefix=prefix, ttl_seconds=3600)
        try:
            epochs = await store.claim([0])
            pipeline = client.pipeline

            def interrupting(*args: Any, **kwargs: Any) -> Any:
                pipe = pipeline(*args, **kwargs)
                mget, execute, ident = pipe.mget, pipe.execute, []

                async def once(here: str) -> None:
                    if here == at and not found["ran"]:
                        found["ran"] = True
                        await hook(other, ident[-1], prefix)

                async def checked(*keys: Any) -> Any:  # the WATCH is on: commands run now
                    ident.append(int(await pipe.execute_command("CLIENT", "ID")))
                    await once("check")
                    return await mget(*keys)

                async def executed(*a: Any, **k: Any) -> Any:
                    await once("exec")
                    return await execute(*a, **k)

                pipe.mget, pipe.execute = checked, executed
                return pipe

            client.pipeline = interrupting  # type: ignore[method-assign]
            try:
                await store.commit({"a": (0, b"state")}, {"clickstream:0": 5}, {}, None, epochs)
            except Fenced as exc:
                found["fenced"] = exc
            client.pipeline = pipeline  # type: ignore[method-assign]
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


async def kill(other: aioredis.Redis, ident: int, prefix: str) -> None:
    await other.client_kill_filter(_id=str(ident))


@pytest.mark.parametrize("at", ["check", "exec"])
def test_a_connection_lost_during_a_fenced_commit_is_retried_not_taken_for_a_fence(
    base_settings: Settings, at: str
) -> None:
    """redis-py reports a connection lost while keys are WATCHed as a WatchError, the error
    it gives when the keys moved. Lost at the EXEC, it was taken for a fence: a lone worker
    whose Redis went away mid-commit thought itself a zombie, dropped its batch and waited two
    minutes for a reassignment that never came. The server ends the connection here (CLIENT
    KILL) before the check or before the EXEC; the commit is written once Redis answers."""
    found = interrupted_commit(base_settings, at, kill)
    assert found["fenced"] is None
    assert found["offsets"] == {"clickstream:0": 5}
    assert found["customers"] == {"a": b"state"}


def test_an_epoch_claimed_between_the_check_and_the_write_fences_the_commit(
    base_settings: Settings,
) -> None:
    """Another worker claims the partition after the commit checked its epoch: the EXEC is
    refused by the WATCH, and the commit is fenced with nothing written."""

    async def claim(other: aioredis.Redis, ident: int, prefix: str) -> None:
        await other.incr(RedisKeys(prefix).epoch(0))

    found = interrupted_commit(base_settings, "exec", claim)
    assert isinstance(found["fenced"], Fenced)
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
                await store._commit_partition(11, part, None, "the same commit")
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
    """The EXEC runs but its reply is lost (the connection drops): the commit is tried again
    and must not add the journal entries twice, also for a partition with no offsets in the
    commit (its windows closed by another partition's time)."""
    url = base_settings.redis_url.get_secret_value()
    prefix = f"tact-test:{uuid.uuid4().hex[:8]}"
    lost: list[bool] = []

    async def run() -> None:
        client = aioredis.Redis.from_url(url)
        store = RedisStateStore(client, prefix=prefix, ttl_seconds=3600)
        pipeline = client.pipeline

        def losing(*args: Any, **kwargs: Any) -> Any:
            pipe = pipeline(*args, **kwargs)
            execute = pipe.execute

            async def executed(*a: Any, **k: Any) -> Any:
                done = await execute(*a, **k)
                if kwargs.get("transaction", True) and not lost:
                    lost.append(True)
                    raise redis.exceptions.ConnectionError("the reply was lost")
                return done

            pipe.execute = executed
            return pipe

        client.pipeline = losing  # type: ignore[method-assign]
        try:
            journal = {2: b'[["view"]]', 7: b'[["settle"]]'}
            await store.commit({"a": (2, b"s")}, {"clickstream:2": 4}, {}, journal=journal)
        finally:
            client.pipeline = pipeline  # type: ignore[method-assign]
            await store.close()

    asyncio.run(run())
    client = redis.Redis.from_url(url)
    try:
        assert lost, "no reply was lost: the test did not test anything"
        for partition, entry in ((2, b'[["view"]]'), (7, b'[["settle"]]')):
            found = [d[b"changes"] for _, d in client.xrange(journal_key(prefix, partition))]
            assert found == [entry]
    finally:
        client.delete(*client.keys(f"*{prefix}*"))
