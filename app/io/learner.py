"""`tact learner`: the one process that learns, for workers run with TACT_LEARNER=true.

Each worker records what its batch teaches the models (app/models.py `Models.change`: the
outcomes' training examples, the exploration cells, co-purchases and order values, the
counts of what is bought anyway, the unsubscribe counts) and writes it, per input partition
(the partition of the customer each change goes with), as one entry of that partition's Redis
stream in the same transaction as the partition's checkpoint: an entry exists exactly when its
batch was checkpointed, so a batch redelivered after a crash is not counted twice. The learner
folds the entries of every partition's journal in one order, by the ids Redis gave them (the
time of their write), then partition, into one set of models, and publishes them (the models
hash, with each journal's position they include and their publication number, the counter,
and which publication last changed each field, in one transaction) every
`learning.snapshot_changes` changes or `learning.snapshot_seconds`; workers read the counter
between batches and swap in the fields changed since their own publication. Entries are
trimmed one publication after the one that included them: each stays at least until the
next publication, for anyone reading the journals as they come.

Only one learner learns at a time: it holds a lease (a key with its name, renewed while it
runs) and publishes only while the lease is its own; a second learner waits for the lease.
A learner that lost its lease (paused past it) exits with status 75, publishing nothing more.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import time
import uuid
from collections.abc import Mapping
from typing import Any

import redis

from app import codec
from app.engine import DecisionEngine
from app.io.redis_store import RedisKeys, as_text, claimed_partitions, models_key

log = logging.getLogger(__name__)

_READ = 50  # journal entries read at once per partition (each a worker's batch)
_BLOCK_MS = 500  # with no entry to fold, `fold` waits this long for one, reading again
_POLL_S = 0.2  # every this often (each read: the partitions, the nodes' clocks, the journals)
_POSITION = "journal:"  # the models hash's field of a partition's position: journal:<partition>
_LEASE_S = 15.0  # the lease lasts this long unless renewed (every pass of the loop, and
_RENEW_S = 2.0  # at least this often while folding a long backlog)
LOST_LEASE = 75  # the exit status of a learner whose lease another has taken

# Renew the lease only if it is still this learner's (atomic: no other may take it between).
_RENEW = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('pexpire', KEYS[1], ARGV[2])
end
return 0
"""
_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('del', KEYS[1])
end
return 0
"""


class LeaseLost(Exception):
    """Another learner holds the lease now."""


class BadEntry(Exception):
    """A journal entry that cannot be folded (not JSON, or a change this version does not
    know: a worker newer than the learner?)."""


class ModelLearner:
    """Folds the journals into the engine's models and publishes them (a sync Redis client,
    or a RedisCluster)."""

    def __init__(self, client: redis.Redis, prefix: str, engine: DecisionEngine) -> None:
        self.redis: Any = client  # (redis-py's own types are looser than its answers)
        self.engine = engine
        self.keys = RedisKeys(prefix)
        self.prefix = prefix
        self.models_key, self.version_key = self.keys.models, self.keys.version
        self.changed_key, self.lease_key = self.keys.changed, self.keys.lease
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.positions: dict[int, str] = {}  # input partition -> its last journal entry folded
        self.trim_at: dict[int, str] = {}  # the positions the last publication included
        self.pending = 0  # changes folded since the last publication
        self.folded = 0  # changes folded since the start
        self.renew = self.redis.register_script(_RENEW)
        self._release = self.redis.register_script(_RELEASE)
        self._cluster = isinstance(client, redis.RedisCluster)

    # -- the lease ----------------------------------------------------------------------------
    def acquire(self, stop: Any = lambda: False) -> bool:
        """Take the lease, waiting while another learner holds it; False if `stop` first."""
        ttl = int(_LEASE_S * 1000)
        waiting = False
        while not stop():
            if self.redis.set(self.lease_key, self.owner, nx=True, px=ttl):
                return True
            if not waiting:
                holder = self.redis.get(self.lease_key)
                log.info(
                    "another learner holds the lease (%s): waiting for it",
                    as_text(holder) if holder is not None else "just released",
                )
                waiting = True
            time.sleep(1.0)
        return False

    def release(self) -> None:
        """Give the lease up (if still this learner's): a waiting learner takes over at once."""
        self._release(keys=[self.lease_key], args=[self.owner])

    def keep(self) -> None:
        if not self.renew(keys=[self.lease_key], args=[self.owner, int(_LEASE_S * 1000)]):
            raise LeaseLost(f"the lease {self.lease_key} is no longer {self.owner}'s")

    # -- folding ------------------------------------------------------------------------------
    def load(self) -> None:
        """Continue from the published models and the journal positions they include."""
        fields = {as_text(k): v for k, v in self.redis.hgetall(self.models_key).items()}
        self.positions = {
            int(name.split(":", 1)[1]): as_text(fields.pop(name))
            for name in [n for n in fields if n.startswith(_POSITION)]
        }
        publication = fields.pop("version", None)
        self.engine.restore_models(fields)
        self.engine.models.changes()  # (what is loaded is published already)
        self.engine.models.publication = int(publication) if publication is not None else 0
        if fields and not self.redis.exists(self.changed_key):
            # Published by a learner that kept no record of what changed (an older tact):
            # every field counts as changed by the latest publication, so a worker holding
            # an older one reads them all, not only what this learner changes next.
            counter = int(self.redis.get(self.version_key) or 0)
            self.redis.zadd(self.changed_key, dict.fromkeys(fields, counter))

    def fold(self, block_ms: int = _BLOCK_MS) -> int:
        """Fold the journal entries written since the positions, of every input partition,
        in one order whatever the timing: by entry id (the time Redis wrote it, then a
        sequence), then partition; only entries older than every Redis node's clock, which
        no entry written later can precede. Waits up to `block_ms` when there is none;
        returns the changes folded."""
        deadline = time.monotonic() + block_ms / 1000
        while not (entries := self._read()):
            left = deadline - time.monotonic()
            if left <= 0:
                return 0
            time.sleep(min(_POLL_S, left))
        folded = 0
        models = self.engine.models
        renewed = time.monotonic()
        for _, partition, entry_id, data in entries:
            try:
                changes = codec.loads(data[b"changes"])
                for change in changes:
                    models.apply(change)
            except (ValueError, KeyError, TypeError) as exc:
                raise BadEntry(
                    f"journal entry {entry_id} of {self.keys.journal(partition)} cannot be "
                    f"folded ({exc}); is a worker running a newer tact than this learner?"
                ) from exc
            folded += len(changes)
            self.positions[partition] = entry_id
            if time.monotonic() - renewed >= _RENEW_S:  # a long backlog: keep the lease
                self.keep()
                renewed = time.monotonic()
        self.pending += folded
        self.folded += folded
        return folded

    def _read(self) -> list[tuple[tuple[int, int], int, str, Any]]:
        """The entries to fold next, in the order to fold them: (id, partition, id, data)."""
        before = f"({self._oldest_clock_ms()}-0"  # (ids from here on may still be written)
        found: list[tuple[tuple[int, int], int, str, Any]] = []
        cut: tuple[int, int] | None = None  # a journal read only in part: fold up to its end
        partitions = claimed_partitions(self.redis, self.prefix)
        with self.redis.pipeline(transaction=False) as pipe:  # (one round trip)
            for partition in partitions:
                start = self.positions.get(partition)
                pipe.xrange(
                    self.keys.journal(partition),
                    f"({start}" if start else "-",
                    before,
                    count=_READ,
                )
            reads = pipe.execute()
        for partition, read in zip(partitions, reads, strict=True):
            for entry_id, data in read:
                text = as_text(entry_id)
                found.append((_entry_order(text), partition, text, data))
            if len(read) == _READ:
                last = _entry_order(as_text(read[-1][0]))
                cut = last if cut is None else min(cut, last)
        found.sort(key=lambda e: (e[0], e[1]))
        return found if cut is None else [e for e in found if e[0] <= cut]

    def _oldest_clock_ms(self) -> int:
        """The earliest clock of the Redis nodes, in ms: any journal entry written from now
        on has an id at least this (each node's ids follow its clock)."""
        if self._cluster:
            times = self.redis.time(target_nodes=redis.RedisCluster.PRIMARIES)
            clocks = times.values() if isinstance(times, dict) else [times]
        else:
            clocks = [self.redis.time()]
        return min(int(s) * 1000 + int(us) // 1000 for s, us in clocks)

    def publish(self) -> int:
        """Write the models that changed, with the journal positions they include, and bump
        the version, in one transaction, only while the lease is this learner's; trim the
        journal entries the last publication included. Returns the new version."""
        fields: dict[str, Any] = dict(self.engine.models.changes())
        changed = list(fields)
        fields.update({f"{_POSITION}{p}": at for p, at in self.positions.items()})
        lost = LeaseLost(f"the lease {self.lease_key} is no longer {self.owner}'s")
        with self.redis.pipeline(transaction=True) as pipe:
            pipe.watch(self.lease_key, self.version_key)
            if as_text(pipe.get(self.lease_key) or b"") != self.owner:
                raise lost
            version = int(pipe.get(self.version_key) or 0) + 1
            # the version also in the hash: a worker that loads the hash knows which it has
            fields["version"] = version
            pipe.multi()
            pipe.hset(self.models_key, mapping=fields)
            # which fields this publication changed: a worker reads only those
            if changed:
                pipe.zadd(self.changed_key, dict.fromkeys(changed, version))
            pipe.set(self.version_key, version)
            try:
                pipe.execute()
            except redis.WatchError:  # taken (or expired) between the check and EXEC
                raise lost from None
        # (each journal in its own slot: trimmed after; what is published is never read again,
        # the entries up to the last publication's positions, not this one's: an entry is
        # kept one publication after it was folded, however soon after its write that was)
        trim_at, self.trim_at = self.trim_at, dict(self.positions)
        if trim_at:
            with self.redis.pipeline(transaction=False) as pipe:
                for partition, at in trim_at.items():
                    pipe.xtrim(self.keys.journal(partition), minid=at, approximate=False)
                pipe.execute()
        self.engine.models.publication = version
        self.pending = 0
        return version


def run_learner(settings: Any, engine: DecisionEngine, client: redis.Redis) -> int:
    """Learn until SIGTERM/SIGINT (then publish what is folded, give the lease up and return
    0), or until the lease is lost (LOST_LEASE)."""
    stopping = False

    def stop(signum: int, frame: Any) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    learner = ModelLearner(client, settings.redis_prefix, engine)
    spec = engine.policy.learning
    log.info("learner %s: waiting for the lease %s", learner.owner, learner.lease_key)
    if not learner.acquire(lambda: stopping):
        return 0
    learner.load()
    log.info(
        "learner %s: learning from the journals of %s (%d partitions read so far); "
        "publishing every %d changes or %g s",
        learner.owner,
        settings.redis_prefix,
        len(learner.positions),
        spec.snapshot_changes,
        spec.snapshot_seconds,
    )
    last = time.monotonic()
    try:
        while not stopping:
            learner.keep()
            learner.fold()
            due = time.monotonic() - last >= spec.snapshot_seconds
            if learner.pending >= spec.snapshot_changes or (learner.pending and due):
                _say_published(learner, learner.publish())
                last = time.monotonic()
        if learner.pending:  # stopping: what is folded is published first
            _say_published(learner, learner.publish())
        learner.release()
    except LeaseLost as exc:
        log.error("%s: another learner learns now; this one stops", exc)
        return LOST_LEASE
    except BadEntry as exc:
        log.error("%s; the learner stops (nothing after the last publication is lost)", exc)
        return 1
    log.info("learner stopped after folding %d changes", learner.folded)
    return 0


def _say_published(learner: ModelLearner, version: int) -> None:
    log.info(
        "published models %s (version %d, %d changes folded so far)",
        learner.engine.models.version,
        version,
        learner.folded,
    )


def _entry_order(entry_id: str) -> tuple[int, int]:
    """A stream entry's id as numbers: (ms, sequence)."""
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


def published(client: Any, prefix: str) -> Mapping[str, bytes]:
    """The models as the learner last published them (fields; `journal:<partition>`: its
    position in each partition's journal)."""
    return {as_text(k): v for k, v in client.hgetall(models_key(prefix)).items()}
