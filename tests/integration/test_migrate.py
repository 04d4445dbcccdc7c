"""`tact state migrate` on a real redis-server: state saved in the key layout of tact before
2026-12 moves to the per-partition layout, and a worker refuses to start beside the old one."""

from __future__ import annotations

import subprocess
from typing import Any

import pytest
import redis

from app.errors import ConfigurationError
from app.io.migrate import check_layout
from app.io.redis_store import RedisKeys
from app.partitioning import partition_of
from app.settings import Settings
from tests.integration.conftest import ROOT, TACT, own, settings_env


def _old_layout(client: Any, prefix: str) -> None:
    """What a worker and a learner of the old layout leave: every key `<prefix>:...`."""
    client.hset(f"{prefix}:offsets", mapping={"clickstream:0": 7, "orders:2": 3})
    client.hset(f"{prefix}:clocks", mapping={"0": 1000.5, "2": 990.0})
    client.set(f"{prefix}:epoch:0", 4)
    client.set(f"{prefix}:epoch:2", 9)
    client.zadd(f"{prefix}:due:2", {"ann": 1500.0})
    for cid in ("ann", "bob", "c:with spaces"):
        client.set(f"{prefix}:c:{cid}", f"state of {cid}".encode(), ex=3600)
    client.set(f"{prefix}:c:forever", b"no ttl")
    folded = client.xadd(f"{prefix}:journal", {"changes": b'[["view"]]'})
    client.xadd(f"{prefix}:journal", {"changes": b'[["view_bought"]]'})  # not learned yet
    client.hset(f"{prefix}:models", mapping={"core": b"m", "version": 2, "journal": folded})
    client.set(f"{prefix}:models:version", 2)
    client.zadd(f"{prefix}:models:changed", {"core": 2})
    client.set(f"{prefix}:learner", b"someone", px=15000)


def test_state_migrates_to_the_per_partition_layout(base_settings: Settings) -> None:
    settings = base_settings.model_copy(update=own("tact-migrate"))
    prefix = settings.redis_prefix
    client = redis.Redis.from_url(settings.redis_url.get_secret_value())
    _old_layout(client, prefix)
    with pytest.raises(ConfigurationError, match="tact state migrate"):
        check_layout(client, prefix)  # a worker or learner would start from nothing

    def migrate() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(TACT), "state", "migrate", "--partitions", "3"],
            cwd=ROOT,
            env=settings_env(settings),
            capture_output=True,
            text=True,
            timeout=60,
        )

    done = migrate()
    assert done.returncode == 0, done.stderr
    assert "4 customers" in done.stdout and "1 journal entries" in done.stdout, done.stdout
    keys = RedisKeys(prefix)
    assert client.hgetall(keys.offsets(0)) == {b"clickstream:0": b"7"}
    assert client.hgetall(keys.offsets(2)) == {b"orders:2": b"3"}
    assert float(client.get(keys.clock(2))) == 990.0
    assert int(client.get(keys.epoch(2))) == 9  # the fence goes on from where it was
    assert client.zrange(keys.due(2), 0, -1, withscores=True) == [(b"ann", 1500.0)]
    for cid in ("ann", "bob", "c:with spaces"):
        key = keys.customer(partition_of(cid, 3), cid)
        assert client.get(key) == f"state of {cid}".encode()
        assert 0 < client.ttl(key) <= 3600  # (idle state still expires)
    assert client.ttl(keys.customer(partition_of("forever", 3), "forever")) == -1
    models = client.hgetall(keys.models)
    assert models == {b"core": b"m", b"version": b"2"}  # (positions: per partition now)
    assert int(client.get(keys.version)) == 2
    assert client.zscore(keys.changed, "core") == 2
    # the entry no learner had folded waits for the next one, once
    assert [d[b"changes"] for _, d in client.xrange(keys.journal(0))] == [b'[["view_bought"]]']
    assert client.keys(f"{prefix}:*") == []  # nothing of the old layout is left
    assert client.smembers(keys.partitions) == {b"0", b"1", b"2"}  # (the learner reads them)
    check_layout(client, prefix)  # a worker may start
    again = migrate()
    assert again.returncode == 0 and "nothing to migrate" in again.stdout
    for key in client.scan_iter(match=f"*{prefix}*"):
        client.delete(key)
