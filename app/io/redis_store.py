"""StateStore on Redis: one key per customer, one hash of offsets, written in MULTI/EXEC."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import TypeVar

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from app.errors import DependencyUnavailable
from app.store import Due

log = logging.getLogger(__name__)
T = TypeVar("T")

_RETRYABLE = (RedisConnectionError, RedisTimeoutError, OSError)


class RedisStateStore:
    """Keys: `{prefix}:c:{customer_id}` (state, expires when idle), `{prefix}:offsets` and
    `{prefix}:models` (hashes), `{prefix}:due:{partition}` (sorted sets: customer -> end of
    their earliest open attribution window).

    A commit that cannot reach Redis is retried with backoff for as long as it takes: the
    stream stalls rather than acknowledging records whose state was never saved.
    """

    def __init__(
        self, client: aioredis.Redis, prefix: str, ttl_seconds: int, max_backoff_s: float = 5.0
    ) -> None:
        self._redis = client
        self._prefix = prefix
        self._offsets_key = f"{prefix}:offsets"
        self._models_key = f"{prefix}:models"
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
        return {_text(k): int(v) for k, v in raw.items()}

    async def load_customers(self, customer_ids: Iterable[str]) -> dict[str, bytes]:
        ids = list(customer_ids)
        if not ids:
            return {}
        keys = [self._key(cid) for cid in ids]
        values = await self._retrying("load customers", lambda: self._redis.mget(keys))
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

    async def commit(
        self,
        customers: Mapping[str, bytes],
        offsets: Mapping[str, int],
        models: Mapping[str, bytes],
        due: Due | None = None,
    ) -> None:
        async def write() -> None:
            async with self._redis.pipeline(transaction=True) as pipe:
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
                await pipe.execute()

        await self._retrying("commit checkpoint", write)

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


def _text(value: bytes | str) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else value


def _bytes(value: bytes | str) -> bytes:
    return value if isinstance(value, bytes) else value.encode("utf-8")
