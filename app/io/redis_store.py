"""StateStore on Redis: each input partition's customer states, offsets, due index, clock,
epoch and journal (the changes of what is learned that `tact learner` folds,
app/io/learner.py) in one hash slot, written by one Lua script (atomic, one round trip); also
on Redis Cluster."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, TypeVar

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from app.errors import DependencyUnavailable
from app.store import Due, Epochs, Fenced, States, check_fence, partition_of_key

log = logging.getLogger(__name__)
T = TypeVar("T")

_RETRYABLE = (RedisConnectionError, RedisTimeoutError, OSError)
_SINCE_TRIES = 3  # the learner published while changed models were read: read again
_LANDED = "@commit"  # the offsets hash's field: the last journaled commit written there

# A commit of one or more input partitions, atomic (one script: one round trip). KEYS: per
# partition its epoch, offsets, due, clock and journal, then its customers' states; last,
# with model fields, the models hash. ARGV: the number of partitions P, the commit's mark
# ('': none), the states' ttl, the number of model fields M; per partition the epoch
# claimed ('': unfenced) and its number of states; the M model fields (name, value); then
# per partition its states, its due entries (count, then customer and end: '' removes), its
# offsets (count, then name and offset), its clock ('': none), its journal entry and whether
# there is one. Returns {1} written, {2} written already (this mark: a reply lost), or {0,
# then per partition its epoch now ('' when none, or when unfenced)}: fenced, nothing
# written.
_COMMIT = """
local parts = tonumber(ARGV[1])
local mark = ARGV[2]
local ttl = tonumber(ARGV[3])
local fields = tonumber(ARGV[4])
local base, now, fenced, k = {}, {}, false, 0
for i = 1, parts do
  base[i] = k
  local epoch = ARGV[3 + 2 * i]
  now[i] = ''
  if epoch ~= '' then
    now[i] = redis.call('GET', KEYS[k + 1]) or ''
    if now[i] ~= epoch then fenced = true end
  end
  k = k + 5 + tonumber(ARGV[4 + 2 * i])
end
if fenced then
  table.insert(now, 1, 0)
  return now
end
if mark ~= '' then
  for i = 1, parts do
    if redis.call('HGET', KEYS[base[i] + 2], '@LANDED@') == mark then return {2} end
  end
end
local at = 5 + 2 * parts
for _ = 1, fields do
  redis.call('HSET', KEYS[k + 1], ARGV[at], ARGV[at + 1])
  at = at + 2
end
for i = 1, parts do
  local b = base[i]
  for j = 1, tonumber(ARGV[4 + 2 * i]) do
    redis.call('SET', KEYS[b + 5 + j], ARGV[at], 'EX', ttl)
    at = at + 1
  end
  for _ = 1, tonumber(ARGV[at]) do
    if ARGV[at + 2] == '' then
      redis.call('ZREM', KEYS[b + 3], ARGV[at + 1])
    else
      redis.call('ZADD', KEYS[b + 3], ARGV[at + 2], ARGV[at + 1])
    end
    at = at + 2
  end
  at = at + 1
  for _ = 1, tonumber(ARGV[at]) do
    redis.call('HSET', KEYS[b + 2], ARGV[at + 1], ARGV[at + 2])
    at = at + 2
  end
  at = at + 1
  if ARGV[at] ~= '' then redis.call('SET', KEYS[b + 4], ARGV[at]) end
  if ARGV[at + 2] == '1' then
    redis.call('XADD', KEYS[b + 5], '*', 'changes', ARGV[at + 1])
    redis.call('HSET', KEYS[b + 2], '@LANDED@', mark)
  end
  at = at + 3
end
return {1}
""".replace("@LANDED@", _LANDED)  # (the offsets hash's field, as read back)


class RedisStateStore:
    """Keys (`RedisKeys`): per input partition N, in one hash slot (the tag
    `{<prefix>:pN}`), the customers' states (expire when idle), the offsets (a hash: every
    input topic's partition N), the due index (a sorted set: customer -> end of their earliest
    open attribution window), the partition's event-time clock, its epoch (the fence, taken by
    INCR; a fenced commit writes only if it is still the epoch its worker claimed) and, with a
    learner, its journal (a stream: each commit's changes of what its customers teach);
    shared, in the slot of `{<prefix>}`, the models, how often `tact learner` has published
    them, and which publication changed each field.

    On one redis-server a commit is one script over every partition it touches (and the
    models a worker learning by itself writes); on Redis Cluster it is one per partition.
    (A script, not WATCH and MULTI/EXEC: one round trip instead of three, and no window
    between the check of the epochs and the write.)

    A commit that cannot reach Redis is retried with backoff for as long as it takes: the
    stream stalls rather than acknowledging records whose state was never saved.
    """

    def __init__(
        self, client: aioredis.Redis, prefix: str, ttl_seconds: int, max_backoff_s: float = 5.0
    ) -> None:
        self._redis: Any = client  # (a RedisCluster on a cluster: the same commands)
        self._cluster = isinstance(client, aioredis.RedisCluster)
        self._keys = keys = RedisKeys(prefix)
        self._models_key = keys.models
        self._version_key = keys.version
        self._changed_key = keys.changed
        self._commit_script = client.register_script(_COMMIT)
        self._ttl = ttl_seconds
        self._max_backoff = max_backoff_s

    async def ping(self) -> None:
        """Raise DependencyUnavailable when Redis does not answer."""
        try:
            await self._redis.ping()
        except _RETRYABLE as exc:
            raise DependencyUnavailable(f"Redis does not answer: {exc}") from exc

    def _groups(self, partitions: Iterable[int]) -> list[list[int]]:
        """The partitions written or read in one transaction together: all of them on one
        server, each alone on a cluster (its keys share a slot, others' do not)."""
        wanted = sorted(set(partitions))
        return [[p] for p in wanted] if self._cluster else [wanted]

    async def _each(
        self, what: str, partitions: list[int], command: Callable[[Any, int], object]
    ) -> list[Any]:
        """`command(pipe, partition)` for each partition, in one round trip (not one
        transaction: on a cluster the partitions' keys are on several nodes); the answers in
        the partitions' order."""
        if not partitions:
            return []

        async def read() -> list[Any]:
            async with self._redis.pipeline(transaction=False) as pipe:
                for partition in partitions:
                    command(pipe, partition)
                return list(await pipe.execute())

        return await self._retrying(what, read)

    async def load_offsets(self, partitions: Iterable[int]) -> dict[str, int]:
        found: dict[str, int] = {}
        wanted = sorted(set(partitions))
        for raw in await self._each(
            "load offsets", wanted, lambda pipe, p: pipe.hgetall(self._keys.offsets(p))
        ):
            found.update(_offsets(raw))
        return found

    async def load_customers(
        self, customers: Mapping[str, int], fence: Epochs | None = None
    ) -> dict[str, bytes]:
        if not customers:
            return {}
        fence = fence or {}
        by_partition: dict[int, list[str]] = {}
        for cid, partition in customers.items():
            by_partition.setdefault(partition, []).append(cid)
        groups = self._groups(by_partition)
        answers = await asyncio.gather(  # (on a cluster, the partitions' reads side by side)
            *(
                self._load_group([c for p in g for c in by_partition[p]], customers, g, fence)
                for g in groups
            )
        )
        found: dict[str, bytes] = {}
        for part in answers:
            found.update(part)
        return found

    async def _load_group(
        self, ids: list[str], customers: Mapping[str, int], group: list[int], fence: Epochs
    ) -> dict[str, bytes]:
        keys = [self._keys.customer(customers[cid], cid) for cid in ids]
        fenced = sorted((p, e) for p, e in fence.items() if p in group or not self._cluster)

        async def read() -> Any:
            if not fenced:
                return await self._redis.mget(keys)
            epochs = [self._keys.epoch(p) for p, _ in fenced]
            if self._cluster:  # one snapshot: one MGET in the partition's slot
                values = list(await self._redis.mget([*epochs, *keys]))
            else:
                async with self._redis.pipeline(transaction=True) as pipe:  # one snapshot
                    pipe.mget(epochs)
                    pipe.mget(keys)
                    now, blobs = await pipe.execute()
                    values = [*now, *blobs]
            _check_fence(fenced, values[: len(fenced)])
            return values[len(fenced) :]

        values = await self._retrying("load customers", read)
        return {
            cid: _bytes(blob) for cid, blob in zip(ids, values, strict=True) if blob is not None
        }

    async def load_models(self) -> dict[str, bytes]:
        raw = await self._retrying("load models", lambda: self._redis.hgetall(self._models_key))
        return {as_text(k): _bytes(v) for k, v in raw.items()}

    async def load_due(
        self, partitions: Iterable[int], until: float, limit: int
    ) -> dict[int, list[str]]:
        wanted = sorted(set(partitions))
        found = await self._each(
            "load due windows",
            wanted,
            lambda pipe, p: pipe.zrangebyscore(
                self._keys.due(p), "-inf", until, start=0, num=limit
            ),
        )
        return {
            p: [as_text(cid) for cid in ids if isinstance(cid, bytes | str)]
            for p, ids in zip(wanted, found, strict=True)
        }

    async def load_clocks(self, partitions: Iterable[int]) -> dict[int, float]:
        wanted = sorted(set(partitions))
        values = await self._each(
            "load clocks", wanted, lambda pipe, p: pipe.get(self._keys.clock(p))
        )
        return {p: float(v) for p, v in zip(wanted, values, strict=True) if v is not None}

    async def claim(self, partitions: Iterable[int]) -> dict[int, int]:
        wanted = list(partitions)

        async def incr() -> list[int]:
            # (on a cluster each INCR is atomic by itself; nothing needs them together)
            async with self._redis.pipeline(transaction=not self._cluster) as pipe:
                for partition in wanted:
                    pipe.incr(self._keys.epoch(partition))
                epochs = [int(n) for n in await pipe.execute()]
            # the partitions ever claimed: where the learner looks for journals
            await self._redis.sadd(self._keys.partitions, *wanted)
            return epochs

        epochs = await self._retrying("claim partitions", incr) if wanted else []
        return dict(zip(wanted, epochs, strict=True))

    async def commit(
        self,
        customers: States,
        offsets: Mapping[str, int],
        models: Mapping[str, bytes],
        due: Due | None = None,
        fence: Epochs | None = None,
        clocks: Mapping[int, float] | None = None,
        journal: Mapping[int, bytes] | None = None,
    ) -> None:
        if models and self._cluster:
            raise ValueError(
                "models are not checkpointed on Redis Cluster: a learner writes them "
                "(TACT_LEARNER=true and `tact learner`)"
            )
        parts = _Parts()
        for cid, (partition, blob) in customers.items():
            parts.of(partition).customers[cid] = blob
        for cid, (partition, end) in (due or {}).items():
            parts.of(partition).due[cid] = end
        for key, offset in offsets.items():
            parts.of(partition_of_key(key)).offsets[key] = offset
        for partition, t in (clocks or {}).items():
            parts.of(partition).clock = t
        for partition, entry in (journal or {}).items():
            parts.of(partition).journal = entry
        fence = fence or {}
        if not self._cluster:  # one transaction, fenced by every epoch presented
            for partition in fence:
                parts.of(partition)
        groups = self._groups(parts.by_partition) or ([[]] if models else [])
        if len(groups) > 1 and fence:
            await self._check_epochs(fence)  # (a zombie's commit: refused before any part)
        # a journal entry once: a transaction tried again after its EXEC ran (the reply
        # lost) finds this commit's mark and is not written twice
        mark = uuid.uuid4().hex if journal else None
        await asyncio.gather(  # (on a cluster, the partitions' transactions side by side)
            *(
                self._commit_group(
                    [(p, parts.by_partition[p]) for p in group],
                    fence,
                    models if i == 0 else {},
                    mark,
                )
                for i, group in enumerate(groups)
            )
        )

    async def _check_epochs(self, fence: Epochs) -> None:
        fenced = sorted(fence.items())
        epochs = await self._each(
            "check the epochs",
            [p for p, _ in fenced],
            lambda pipe, p: pipe.get(self._keys.epoch(p)),
        )
        _check_fence(fenced, epochs)

    async def _commit_group(
        self,
        group: list[tuple[int, _Part]],
        fence: Epochs,
        models: Mapping[str, bytes],
        mark: str | None,
    ) -> None:
        """One transaction's partitions (all of them on one server, one on a cluster) and
        the models, as one script: fenced by every epoch presented, all or nothing."""
        k = self._keys
        keys: list[Any] = []
        head: list[Any] = [len(group), mark or "", self._ttl, len(models)]
        body: list[Any] = []
        for name, value in models.items():
            body += [name, value]
        for partition, part in group:
            epoch = fence.get(partition)
            head += ["" if epoch is None else epoch, len(part.customers)]
            keys += [k.epoch(partition), k.offsets(partition), k.due(partition)]
            keys += [k.clock(partition), k.journal(partition)]
            keys += [k.customer(partition, cid) for cid in part.customers]
        for _, part in group:
            body += part.customers.values()
            body.append(len(part.due))
            for cid, end in part.due.items():
                body += [cid, "" if end is None else end]
            body.append(len(part.offsets))
            for name, offset in part.offsets.items():
                body += [name, offset]
            body += ["" if part.clock is None else part.clock, part.journal or b""]
            body.append(1 if part.journal is not None else 0)
        if models:
            keys.append(self._models_key)
        fenced = sorted((p, fence[p]) for p, _ in group if p in fence)
        at = {p: i for i, (p, _) in enumerate(group)}

        async def write() -> None:
            done = await self._commit_script(keys=keys, args=head + body, client=self._redis)
            if int(done[0]) == 0:  # fenced: the epochs now
                _check_fence(fenced, [done[1 + at[p]] or None for p, _ in fenced])
                raise Fenced(f"the commit was refused: epochs now {done[1:]!r}")  # (never)

        await self._retrying("commit checkpoint", write)

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
            wanted = [as_text(n) for n in changed]
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


class RedisKeys:
    """Where tact keeps an app's state in Redis (`prefix`: tact:<app id>). Each input
    partition's keys carry the hash tag `{<prefix>:pN}`, so they live in one slot of a Redis
    Cluster and a partition's checkpoint is one transaction; the learner's keys carry
    `{<prefix>}`, so it publishes in one transaction."""

    LAYOUT = "2"  # (1: tact before 2026-12, every key `<prefix>:...`, one slot per key)

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        shared = f"{{{prefix}}}"
        self.models = f"{shared}:models"  # a hash: the published (or checkpointed) models
        self.version = f"{shared}:models:version"  # a counter: the learner's publications
        # a sorted set: each field of the models by the publication that last changed it (a
        # worker swapping in newer models reads only what changed since its own)
        self.changed = f"{shared}:models:changed"
        self.lease = f"{shared}:learner"  # the learner's lease: its name, while it learns
        self.partitions = f"{shared}:partitions"  # a set: the input partitions ever claimed
        self.layout = f"{shared}:layout"  # LAYOUT, once a worker or a migration wrote it

    def tag(self, partition: int) -> str:
        return f"{{{self.prefix}:p{partition}}}"

    def customer(self, partition: int, customer_id: str) -> str:
        return f"{self.tag(partition)}:c:{customer_id}"

    def offsets(self, partition: int) -> str:
        """A hash: `<topic>:<partition>` -> the next offset to read, of every input topic."""
        return f"{self.tag(partition)}:offsets"

    def due(self, partition: int) -> str:
        return f"{self.tag(partition)}:due"

    def clock(self, partition: int) -> str:
        """The latest event time read from the partition."""
        return f"{self.tag(partition)}:clock"

    def epoch(self, partition: int) -> str:
        return f"{self.tag(partition)}:epoch"

    def journal(self, partition: int) -> str:
        """A stream: each checkpoint's changes of what the partition's customers teach,
        written in the checkpoint's transaction, for `tact learner`."""
        return f"{self.tag(partition)}:journal"


def journal_key(prefix: str, partition: int) -> str:
    return RedisKeys(prefix).journal(partition)


def version_key(prefix: str) -> str:
    return RedisKeys(prefix).version


def models_key(prefix: str) -> str:
    return RedisKeys(prefix).models


def changed_key(prefix: str) -> str:
    return RedisKeys(prefix).changed


def app_key_patterns(prefix: str) -> list[str]:
    """SCAN patterns matching every key of an app: the workers' and the learner's
    (`{<prefix>...}`) and the others' (`<prefix>:...`: connectors, the onsite API)."""
    return [f"{prefix}:*", f"{{{prefix}[:}}]*"]


def claimed_partitions(client: Any, prefix: str) -> list[int]:
    """The input partitions any worker of the app has claimed (a sync client)."""
    return sorted(int(p) for p in client.smembers(RedisKeys(prefix).partitions))


def checkpointed(client: Any, prefix: str) -> dict[str, int]:
    """The next offset of every input partition as the workers last checkpointed it (a sync
    client: for tools watching a worker, such as the demo and the benchmarks)."""
    keys = RedisKeys(prefix)
    found: dict[str, int] = {}
    for partition in claimed_partitions(client, prefix):
        found.update(_offsets(client.hgetall(keys.offsets(partition))))
    return found


def _offsets(raw: Mapping[bytes | str, bytes | str]) -> dict[str, int]:
    """The offsets hash as read: `<topic>:<partition>` -> next offset."""
    return {name: int(v) for k, v in raw.items() if (name := as_text(k)) != _LANDED}


def as_text(value: bytes | str) -> str:
    """A Redis answer (bytes, or str from a decoding client) as text."""
    return value.decode("utf-8") if isinstance(value, bytes) else value


def _bytes(value: bytes | str) -> bytes:
    return value if isinstance(value, bytes) else value.encode("utf-8")


class _Part:
    """What a commit writes of one input partition."""

    __slots__ = ("clock", "customers", "due", "journal", "offsets")

    def __init__(self) -> None:
        self.customers: dict[str, bytes] = {}
        self.due: dict[str, float | None] = {}
        self.offsets: dict[str, int] = {}
        self.clock: float | None = None
        self.journal: bytes | None = None


class _Parts:
    def __init__(self) -> None:
        self.by_partition: dict[int, _Part] = {}

    def of(self, partition: int) -> _Part:
        part = self.by_partition.get(partition)
        if part is None:
            part = self.by_partition[partition] = _Part()
        return part


def _check_fence(fenced: list[tuple[int, int]], values: list[Any]) -> None:
    """app/store.py `check_fence` on the epoch keys of `fenced` as read (`values`)."""
    current = {p: None if v is None else int(v) for (p, _), v in zip(fenced, values, strict=True)}
    check_fence(dict(fenced), current)
