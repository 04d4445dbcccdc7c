"""`tact learner`: the one process that learns, for workers run with TACT_LEARNER=true.

Each worker records what its batch teaches the models (app/models.py `Models.change`: the
outcomes' training examples, the exploration cells, co-purchases and order values, the
counts of what is bought anyway, the unsubscribe counts) and writes it as one entry of a Redis
stream in the same transaction as its checkpoint: an entry exists exactly when its batch was
checkpointed, so a batch redelivered after a crash is not counted twice. The learner folds the
entries in the stream's order into one set of models and publishes them (the models hash,
with the stream position they include and their publication number, the counter, and which
publication last changed each field, in one transaction) every `learning.snapshot_changes`
changes or `learning.snapshot_seconds`; workers read the counter between batches and swap in
the fields changed since their own publication. Entries it has published are trimmed.

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
from app.io.redis_store import changed_key, journal_key, models_key, version_key

log = logging.getLogger(__name__)

_READ = 50  # journal entries read at once (each a worker's batch)
_BLOCK_MS = 500  # a read waits this long for an entry
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
    """Folds the journal into the engine's models and publishes them (a sync Redis client)."""

    def __init__(self, client: redis.Redis, prefix: str, engine: DecisionEngine) -> None:
        self.redis: Any = client  # (redis-py's own types are looser than its answers)
        self.engine = engine
        self.models_key, self.version_key = models_key(prefix), version_key(prefix)
        self.changed_key = changed_key(prefix)
        self.journal_key, self.lease_key = journal_key(prefix), f"{prefix}:learner"
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.position = "0-0"  # the last journal entry folded
        self.pending = 0  # changes folded since the last publication
        self.folded = 0  # changes folded since the start
        self.renew = self.redis.register_script(_RENEW)
        self._release = self.redis.register_script(_RELEASE)

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
                    _text(holder) if holder is not None else "just released",
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
        """Continue from the published models and the journal position they include."""
        fields = {_text(k): v for k, v in self.redis.hgetall(self.models_key).items()}
        position = fields.pop("journal", None)
        publication = fields.pop("version", None)
        self.engine.restore_models(fields)
        self.engine.models.changes()  # (what is loaded is published already)
        self.engine.models.publication = int(publication) if publication is not None else 0
        self.position = _text(position) if position is not None else "0-0"
        if fields and not self.redis.exists(self.changed_key):
            # Published by a learner that kept no record of what changed (an older tact):
            # every field counts as changed by the latest publication, so a worker holding
            # an older one reads them all, not only what this learner changes next.
            counter = int(self.redis.get(self.version_key) or 0)
            self.redis.zadd(self.changed_key, dict.fromkeys(fields, counter))

    def fold(self, block_ms: int = _BLOCK_MS) -> int:
        """Fold the journal entries after `position` (waiting up to `block_ms` for one);
        returns the changes folded."""
        found = self.redis.xread({self.journal_key: self.position}, count=_READ, block=block_ms)
        folded = 0
        models = self.engine.models
        renewed = time.monotonic()
        for _, entries in found or ():
            for entry_id, data in entries:
                try:
                    changes = codec.loads(data[b"changes"])
                    for change in changes:
                        models.apply(change)
                except (ValueError, KeyError, TypeError) as exc:
                    raise BadEntry(
                        f"journal entry {_text(entry_id)} of {self.journal_key} cannot be "
                        f"folded ({exc}); is a worker running a newer tact than this learner?"
                    ) from exc
                folded += len(changes)
                self.position = _text(entry_id)
                if time.monotonic() - renewed >= _RENEW_S:  # a long backlog: keep the lease
                    self.keep()
                    renewed = time.monotonic()
        self.pending += folded
        self.folded += folded
        return folded

    def publish(self) -> int:
        """Write the models that changed, with the journal position they include, and bump
        the version, in one transaction, only while the lease is this learner's; trim the
        journal entries folded. Returns the new version."""
        fields: dict[str, Any] = dict(self.engine.models.changes())
        changed = list(fields)
        fields["journal"] = self.position
        lost = LeaseLost(f"the lease {self.lease_key} is no longer {self.owner}'s")
        with self.redis.pipeline(transaction=True) as pipe:
            pipe.watch(self.lease_key, self.version_key)
            if _text(pipe.get(self.lease_key) or b"") != self.owner:
                raise lost
            version = int(pipe.get(self.version_key) or 0) + 1
            # the version also in the hash: a worker that loads the hash knows which it has
            fields["version"] = version
            pipe.multi()
            pipe.hset(self.models_key, mapping=fields)
            # which fields this publication changed: a worker reads only those
            pipe.zadd(self.changed_key, dict.fromkeys(changed, version))
            pipe.set(self.version_key, version)
            pipe.xtrim(self.journal_key, minid=self.position)
            try:
                pipe.execute()
            except redis.WatchError:  # taken (or expired) between the check and EXEC
                raise lost from None
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
        "learner %s: learning from %s after %s; publishing every %d changes or %g s",
        learner.owner,
        learner.journal_key,
        learner.position,
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


def _text(value: bytes | str) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else value


def published(client: Any, prefix: str) -> Mapping[str, bytes]:
    """The models as the learner last published them (fields; `journal`: its position)."""
    return {_text(k): v for k, v in client.hgetall(models_key(prefix)).items()}
