"""StateStore on Redis: one key per customer, one hash of offsets, written in MULTI/EXEC; and
the stream of changes of what is learned that `tact learner` folds (app/io/learner.py)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, TypeVar

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.exceptions import WatchError

from app.errors import DependencyUnavailable
from app.store import Due, Epochs, check_fence

log = logging.getLogger(__name__)
T = TypeVar("T")

_RETRYABLE = (RedisConnectionError, RedisTimeoutError, OSError)
_WATCH_TRIES = 3  # a commit's WATCH broken this often with the epochs unmoved: back off
_SINCE_TRIES = 3  # the learner published while changed models were read: read again


class RedisStateStore:
    """Keys: `{prefix}:c:{customer_id}` (state, expires when idle), `{prefix}:offsets` and
    `{prefix}:models` (hashes), `{prefix}:due:{partition}` (sorted sets: customer -> end of
    their earliest open attribution window), `{prefix}:clocks` (a hash: input partition ->
    the latest event time read from it), `{prefix}:epoch:{partition}` (counters: the
    fence, taken by INCR; a fenced commit WATCHes them and writes in MULTI/EXEC only if
    each is still the epoch its worker claimed); with a learner, `{prefix}:journal` (a
    stream: each commit's changes of what is learned) and `{prefix}:models:version` (how
    often `tact learner` has published the models).

    A commit that cannot reach Redis is retried with backoff for as long as it takes: the
    stream stalls rather than acknowledging records whose state was never saved.
    """

    def __init__(
        self, client: aioredis.Redis, prefix: str, ttl_seconds: int, max_backoff_s: float = 5.0
    ) -> None:
        self._redis = client
        self._prefix = prefix
        self._offsets_key = f"{prefix}:offsets"
        self._models_key = models_key(prefix)
        self._clocks_key = f"{prefix}:clocks"
        self._journal_key = journal_key(prefix)
        self._version_key = version_key(prefix)
        self._changed_key = changed_key(prefix)
        self._ttl = ttl_seconds
        self._max_backoff = max_backoff_s

    def _key(self, customer_id: str) -> str:
        return f"{self._prefix}:c:{customer_id}"

    async def ping(self) -> None:
        """Raise DependencyUnavailable when Redis does not answer."""
        try:
            await self._redis.ping()
        except _RETRYABLE as exc:
            raise DependencyUnavailable(f"Redis does not answer: {exc}") from exc

    async def load_offsets(self) -> dict[str, int]:
        raw = await self._retrying("load offsets", lambda: self._redis.hgetall(self._offsets_key))
        return _offsets(raw)

    async def load_customers(
        self, customer_ids: Iterable[str], fence: Epochs | None = None
    ) -> dict[str, bytes]:
        ids = list(customer_ids)
        if not ids:
            return {}
        keys = [self._key(cid) for cid in ids]
        fenced = sorted((fence or {}).items())
        if not fenced:
            values = await self._retrying("load customers", lambda: self._redis.mget(keys))
        else:

            async def read() -> list[Any]:
                async with self._redis.pipeline(transaction=True) as pipe:  # one snapshot
                    pipe.mget([self._epoch(p) for p, _ in fenced])
                    pipe.mget(keys)
                    epochs, blobs = await pipe.execute()
                _check_fence(fenced, epochs)
                return list(blobs)

            values = await self._retrying("load customers", read)
        return {
            cid: _bytes(blob) for cid, blob in zip(ids, values, strict=True) if blob is not None
        }

    async def load_models(self) -> dict[str, bytes]:
        raw = await self._retrying("load models", lambda: self._redis.hgetall(self._models_key))
        return {_text(k): _bytes(v) for k, v in raw.items()}

    async def load_due(self, partition: int, until: float, limit: int) -> list[str]:
        key = f"{self._prefix}:due:{partition}"
        found = await self._retrying(
            "load due windows",
            lambda: self._redis.zrangebyscore(key, "-inf", until, start=0, num=limit),
        )
        return [_text(cid) for cid in found if isinstance(cid, bytes | str)]

    async def load_clocks(self, partitions: Iterable[int]) -> dict[int, float]:
        wanted = list(partitions)
        if not wanted:
            return {}
        values = await self._retrying(
            "load clocks", lambda: self._redis.hmget(self._clocks_key, [str(p) for p in wanted])
        )
        return {p: float(v) for p, v in zip(wanted, values, strict=True) if v is not None}

    def _epoch(self, partition: int) -> str:
        return f"{self._prefix}:epoch:{partition}"

    async def claim(self, partitions: Iterable[int]) -> dict[int, int]:
        wanted = list(partitions)

        async def incr() -> list[int]:
            async with self._redis.pipeline(transaction=True) as pipe:
                for partition in wanted:
                    pipe.incr(self._epoch(partition))
                return [int(n) for n in await pipe.execute()]

        epochs = await self._retrying("claim partitions", incr) if wanted else []
        return dict(zip(wanted, epochs, strict=True))

    async def commit(
        self,
        customers: Mapping[str, bytes],
        offsets: Mapping[str, int],
        models: Mapping[str, bytes],
        due: Due | None = None,
        fence: Epochs | None = None,
        clocks: Mapping[int, float] | None = None,
        journal: bytes | None = None,
    ) -> None:
        fenced = sorted((fence or {}).items())
        keys = [self._epoch(p) for p, _ in fenced]

        async def write() -> None:
            # redis-py raises WatchError both when a watched epoch moved and when the
            # connection broke while watching: check the epochs again, which raises Fenced
            # if one moved, or a connection error (retried) while Redis is away.
            for _ in range(_WATCH_TRIES):
                try:
                    return await attempt()
                except WatchError:
                    continue
            raise RedisConnectionError(
                f"the commit's WATCH broke {_WATCH_TRIES} times with the epochs unmoved"
            )

        async def attempt() -> None:
            if journal is not None and offsets and await self._landed(offsets):
                return  # a commit tried again whose EXEC ran (its reply lost): not twice
            async with self._redis.pipeline(transaction=True) as pipe:
                if keys:
                    await pipe.watch(*keys)
                    _check_fence(fenced, await pipe.mget(keys))
                    pipe.multi()  # type: ignore[no-untyped-call]
                for cid, blob in customers.items():
                    pipe.set(self._key(cid), blob, ex=self._ttl)
                for cid, (partition, end) in (due or {}).items():
                    key = f"{self._prefix}:due:{partition}"
                    if end is None:
                        pipe.zrem(key, cid)
                    else:
                        pipe.zadd(key, {cid: end})
                if offsets:
                    pipe.hset(self._offsets_key, mapping={k: v for k, v in offsets.items()})
                if models:
                    pipe.hset(self._models_key, mapping={k: v for k, v in models.items()})
                if clocks:
                    pipe.hset(self._clocks_key, mapping={str(p): t for p, t in clocks.items()})
                if journal is not None:
                    pipe.xadd(self._journal_key, {"changes": journal})
                await pipe.execute()

        await self._retrying("commit checkpoint", write)

    async def _landed(self, offsets: Mapping[str, int]) -> bool:
        """Whether the offsets hash holds these offsets already: this commit landed. (Only
        the fenced owner of a partition writes its offsets, and each commit moves them on.)"""
        held = await self._redis.hmget(self._offsets_key, list(offsets))
        return all(
            h is not None and int(h) == v for h, v in zip(held, offsets.values(), strict=True)
        )

    async def models_version(self) -> int:
        raw = await self._retrying(
            "read the models' version", lambda: self._redis.get(self._version_key)
        )
        return int(raw) if raw is not None else 0

    async def load_models_since(self, version: int) -> dict[str, bytes] | None:
        # The names changed after `version` as of one publication (the learner moves the
        # counter and the set together), then those fields, which must still be of that
        # publication: if the learner published again in between, read again.

        async def names() -> list[Any]:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.get(self._version_key)
                pipe.zrangebyscore(self._changed_key, f"({version}", "+inf")
                return list(await pipe.execute())

        for _ in range(_SINCE_TRIES):
            now, changed = await self._retrying("read what the learner changed", names)
            wanted = [_text(n) for n in changed]
            if now is None or "core" not in wanted:  # (a learner that keeps no such record)
                return None
            keys = [*wanted, "version"]

            async def read(keys: list[str] = keys) -> list[Any]:
                return list(await self._redis.hmget(self._models_key, keys))

            values = await self._retrying("load changed models", read)
            if values[-1] is not None and int(values[-1]) == int(now):
                fields = {n: _bytes(v) for n, v in zip(wanted, values, strict=False) if v}
                if "core" not in fields:  # (a hash emptied meanwhile: load what there is)
                    return None
                fields["version"] = _bytes(values[-1])
                return fields
        return None

    async def close(self) -> None:
        await self._redis.aclose()

    async def _retrying(self, what: str, call: Callable[[], Awaitable[T]]) -> T:
        delay = 0.1
        attempt = 0
        while True:
            try:
                return await call()
            except _RETRYABLE as exc:
                attempt += 1
                log.warning(
                    "Redis unavailable during %s (attempt %s): %s; retrying in %.1fs",
                    what,
                    attempt,
                    exc,
                    delay,
                    extra={"dependency": "redis"},
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._max_backoff)


def journal_key(prefix: str) -> str:
    """The learner's journal: a stream of the workers' changes of what is learned, one entry
    per checkpoint, written in the checkpoint's transaction."""
    return f"{prefix}:journal"


def version_key(prefix: str) -> str:
    """A counter: how many times the learner has published the models."""
    return f"{prefix}:models:version"


def models_key(prefix: str) -> str:
    return f"{prefix}:models"


def changed_key(prefix: str) -> str:
    """A sorted set: each field of the models by the publication that last changed it (a
    worker swapping in newer models reads only what changed since its own)."""
    return f"{prefix}:models:changed"


def checkpointed(client: Any, prefix: str) -> dict[str, int]:
    """The next offset of every input partition as the worker last checkpointed it (a sync
    client: for tools watching a worker, such as the demo and the benchmarks)."""
    return _offsets(client.hgetall(f"{prefix}:offsets"))


def _offsets(raw: Mapping[bytes | str, bytes | str]) -> dict[str, int]:
    """The offsets hash as read: partition -> next offset."""
    return {_text(k): int(v) for k, v in raw.items()}


def _text(value: bytes | str) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else value


def _bytes(value: bytes | str) -> bytes:
    return value if isinstance(value, bytes) else value.encode("utf-8")


def _check_fence(fenced: list[tuple[int, int]], values: list[Any]) -> None:
    """app/store.py `check_fence` on the epoch keys of `fenced` as read (`values`)."""
    current = {p: None if v is None else int(v) for (p, _), v in zip(fenced, values, strict=True)}
    check_fence(dict(fenced), current)
