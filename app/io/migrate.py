"""The Redis key layout of a worker's state: checked at start, and `tact state migrate` from
the layout of tact before 2026-12 (every key `<prefix>:...`: the offsets and clocks in one hash
each, one journal) to the one of app/io/redis_store.py `RedisKeys` (each input partition's keys
in one hash slot), which also runs on Redis Cluster."""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any

import redis

from app.errors import ConfigurationError
from app.io.redis_store import RedisKeys, as_text
from app.partitioning import partition_of
from app.store import partition_of_key

log = logging.getLogger(__name__)

_CHUNK = 500  # customers moved per transaction


def old_keys(client: Any, prefix: str) -> list[str]:
    """The keys of the old layout's shared state that exist (none: nothing to migrate)."""
    names = [f"{prefix}:{name}" for name in ("offsets", "models", "journal", "clocks")]
    return [name for name in names if client.exists(name)]


def check_layout(client: Any, prefix: str) -> None:
    """ConfigurationError when Redis holds this app's state in the old layout (a worker would
    start from nothing beside it); else mark the layout (a sync client)."""
    keys = RedisKeys(prefix)
    found = old_keys(client, prefix)  # (also after a migration: an older worker still running)
    if found:
        raise ConfigurationError(
            f"Redis holds this app's state in the key layout of an older tact ({found[0]}): "
            "stop every worker and the learner, then run `tact state migrate` once (or delete "
            "the keys to start afresh)"
        )
    if client.get(keys.layout) is None:
        client.set(keys.layout, RedisKeys.LAYOUT, nx=True)


def migrate(client: Any, prefix: str, partitions_count: int) -> Counter[str]:
    """Move the old layout's keys to the new one (one redis-server, workers and learner
    stopped; a customer's partition is murmur2 of their id, as Kafka's default partitioner
    puts their events); returns what was moved. Safe to run again after an interruption:
    each key is deleted in the transaction that writes its copy."""
    keys = RedisKeys(prefix)
    moved: Counter[str] = Counter()
    claimed: set[int] = set()

    def move(old: str, write: Any) -> None:
        with client.pipeline(transaction=True) as pipe:
            write(pipe)
            pipe.delete(old)
            pipe.execute()

    offsets = {as_text(k): v for k, v in client.hgetall(f"{prefix}:offsets").items()}
    clocks = {int(as_text(k)): v for k, v in client.hgetall(f"{prefix}:clocks").items()}

    def write_offsets(pipe: Any) -> None:
        for name, value in offsets.items():
            partition = partition_of_key(name)
            claimed.add(partition)
            pipe.hset(keys.offsets(partition), name, value)
        for partition, t in clocks.items():
            pipe.set(keys.clock(partition), t)
        pipe.delete(f"{prefix}:clocks")

    move(f"{prefix}:offsets", write_offsets)
    moved["offsets"], moved["clocks"] = len(offsets), len(clocks)

    for old in client.scan_iter(match=f"{prefix}:epoch:*", count=1000):
        name = as_text(old)
        partition = int(name.rsplit(":", 1)[1])
        claimed.add(partition)
        epoch = client.get(old)
        move(name, lambda pipe, p=partition, e=epoch: pipe.set(keys.epoch(p), e))
        moved["epochs"] += 1

    for old in client.scan_iter(match=f"{prefix}:due:*", count=1000):
        name = as_text(old)
        partition = int(name.rsplit(":", 1)[1])
        entries = dict(client.zrange(old, 0, -1, withscores=True))
        if entries:
            move(name, lambda pipe, p=partition, d=entries: pipe.zadd(keys.due(p), d))
        moved["due"] += len(entries)

    stem = f"{prefix}:c:"
    batch: list[bytes] = []

    def customers(names: list[bytes]) -> None:
        with client.pipeline(transaction=True) as pipe:  # (each state with its expiry)
            for name in names:
                pipe.get(name)
                pipe.pttl(name)
            found = pipe.execute()
        with client.pipeline(transaction=True) as pipe:
            for name, blob, ttl in zip(names, found[::2], found[1::2], strict=True):
                if blob is None or ttl == -2:  # (expired meanwhile)
                    continue
                cid = as_text(name)[len(stem) :]
                partition = partition_of(cid, partitions_count)
                claimed.add(partition)
                pipe.set(keys.customer(partition, cid), blob, px=ttl if ttl > 0 else None)
                pipe.delete(name)
                moved["customers"] += 1
            pipe.execute()

    for name in client.scan_iter(match=f"{stem}*", count=1000):
        batch.append(name)
        if len(batch) >= _CHUNK:
            customers(batch)
            batch = []
    if batch:
        customers(batch)

    models = {as_text(k): v for k, v in client.hgetall(f"{prefix}:models").items()}
    position = as_text(models.pop("journal", b"0-0"))
    unfolded = client.xrange(f"{prefix}:journal", f"({position}", "+")
    version = client.get(f"{prefix}:models:version")
    changed = dict(client.zrange(f"{prefix}:models:changed", 0, -1, withscores=True))

    def write_models(pipe: Any) -> None:
        if models:
            pipe.hset(keys.models, mapping=models)
        if version is not None:
            pipe.set(keys.version, version)
        if changed:
            pipe.zadd(keys.changed, changed)
        # entries no learner has folded yet: the next learner folds them, once
        for _, data in unfolded:
            pipe.xadd(keys.journal(0), {"changes": data[b"changes"]})
        if unfolded:
            claimed.add(0)
        for name in ("models:version", "models:changed", "journal", "learner"):
            pipe.delete(f"{prefix}:{name}")
        # the partitions a learner reads (workers add theirs as they claim them)
        partitions = claimed | set(range(partitions_count))
        pipe.sadd(keys.partitions, *sorted(partitions))
        pipe.set(keys.layout, RedisKeys.LAYOUT)

    move(f"{prefix}:models", write_models)
    moved["model fields"], moved["journal entries"] = len(models), len(unfolded)
    return moved


def run_migrate(client: Any, prefix: str, partitions: int) -> str:
    """`tact state migrate`: what was moved, in words."""
    if isinstance(client, redis.RedisCluster):
        raise ConfigurationError(
            "tact state migrate runs on the single redis-server the older tact used: migrate "
            "there, then copy the keys to the cluster (e.g. `redis-cli --cluster import`)"
        )
    if client.get(RedisKeys(prefix).layout) is not None and not old_keys(client, prefix):
        return f"the state of {prefix} is in the current layout already: nothing to migrate"
    moved = migrate(client, prefix, partitions)
    return f"migrated the state of {prefix} ({partitions} input partitions): " + ", ".join(
        f"{n:,} {what}" for what, n in moved.items()
    )
