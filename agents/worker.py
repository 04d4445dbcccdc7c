"""One worker's batch loop, without Faust: checkpointed state in, actions and dead letters out.

Per batch: skip records already in the checkpoint, decode, load the states of customers not
in memory, decide (pure core), send actions and dead letters and wait until the broker has
them, checkpoint states and offsets in one atomic write; the caller then acknowledges the
records so Faust may commit their offsets. A crash anywhere in between loses nothing: the
records are redelivered and re-decided from the checkpointed state, giving the same actions.

A batch that fails inside the process (a send the broker refused, Redis, a bug) leaves nothing
behind: the worker drops everything in memory that the checkpoint does not hold and handles
the same records again from the checkpoint, backing off, for `batch_retry_s`; then it gives up
(BatchFailed), and the agent exits the process for its supervisor to restart it. It never
carries on with half of a batch applied, and never stays alive doing nothing.

Checkpoints are fenced (app/store.py): at an assignment (or before the next batch, if a
rebalance overtook that claim) the worker claims a new epoch for each of its input partitions,
then loads offsets, models and clocks; each commit, and each read of customer states, presents
those epochs. (A paused worker that read the states its partitions' new owner wrote would
re-apply records those states already hold, from the offsets it still has, and send actions
that differ from the owner's.) A batch read before
a rebalance that holds records of partitions now owned elsewhere is not handled. A commit
refused because another worker has claimed one of them since (this process was paused past
its session timeout and its partitions moved on) drops the batch unacknowledged; the worker
then handles nothing until Kafka assigns it partitions again, and exits for its supervisor if
that does not happen within `_FENCED_EXIT_S`.

Rebalances are warm: the cached customers of partitions the worker keeps stay in memory, as
long as nobody else claimed those partitions in between (the new epoch is the old one + 1).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any

from app import codec
from app.actions import encode, encode_outcome
from app.io import metrics
from app.partitioning import partition_of
from app.pipeline import BatchPipeline, BatchResult, Record
from app.settings import Settings
from app.store import Fenced, StateStore
from schemas import Envelope

log = logging.getLogger(__name__)

_SWEEP_LIMIT = 1000  # due customers loaded per partition per batch
# The due index is looked at when the watermark has moved this far (event time) since it last
# was, not at every batch: at 1,000 events/s that round trip cost a tenth of a batch's time.
_SWEEP_EVERY_S = 1.0
_RETRY_FIRST_S = 0.5  # the first wait before a failed batch is handled again; doubles to
_RETRY_MAX_S = 30.0  # at most this
_FENCED_EXIT_S = 120.0  # fenced out and no new assignment since: exit for the supervisor
_VERSION_EVERY_S = 0.5  # with a learner: how often to look for newer models


# Every Action record says which worker process decided it, and the epoch of its customer's
# input partition then (-1: unknown): two copies of one action_id can be told apart.
_WORKER_HEADER, _EPOCH_HEADER = "tact.worker", "tact.epoch"
_WORKER = f"{socket.gethostname()}:{os.getpid()}".encode()


class BatchFailed(Exception):
    """A batch could not be sent or checkpointed within `batch_retry_s`."""


Headers = list[tuple[str, bytes]]
OutRecord = tuple[str, bytes | None, bytes | None, Headers | None]  # topic, key, value, headers
# send(records) hands a batch's records to the producer, each topic-partition's in their
# order, and returns awaitables that complete when the broker has them all (raising if any
# could not be delivered).
Sender = Callable[[list[OutRecord]], Awaitable[list[Awaitable[Any]]]]


class DecisionWorker:
    """The state of one worker process: the engine's cache, the checkpoint, the sender."""

    def __init__(
        self, settings: Settings, store: StateStore, pipeline: BatchPipeline, send: Sender
    ) -> None:
        self.settings = settings
        self.store = store
        self.pipeline = pipeline
        self.send = send
        self.committed: dict[str, int] | None = None
        self.offsets_read: set[int] = set()  # input partitions whose offsets are in `committed`
        self.saved: dict[int, float] = {}  # the partitions' clocks as checkpointed
        self.generation = 0
        self.assigned: set[int] = set()  # input partition numbers this worker owns
        self.epochs: dict[int, int] | None = None  # claimed for `assigned`; None: claim first
        self.kept: dict[int, int] = {}  # partitions owned before the rebalance -> their epoch
        self.fenced_at: float | None = None  # when a commit was refused (until reassigned)
        self.revoked = False  # between a revocation and the next assignment: handle nothing
        self._claiming = asyncio.Lock()  # one claim at a time (assignment and batch may race)
        self.partition_of: dict[str, int] = {}  # cached customer -> their input partition
        self.unknown_skus = 0  # events naming a SKU the catalog lacks, logged at 1, 10, 100...
        # With a learner (TACT_LEARNER): the batch's changes of what is learned, written with
        # its checkpoint for `tact learner`, and the version of the models it published last
        # read (the engine's models are those, as loaded).
        self.learner = settings.learner
        self.journal: dict[int, list[tuple[Any, ...]]] = {}  # per input partition
        self.models_at = -1
        self.version_due = 0.0  # when to ask the store for the models' version again
        self.warned_learner = False
        # the watermark of the last sweep of the due index, if it found all there was (None:
        # sweep at the next batch)
        self.swept: float | None = None

    def assign(self, partitions: Iterable[int]) -> None:
        """The input partitions this worker now owns (whose due windows it closes). Cached
        customers of partitions it no longer owns are dropped; `claim` takes their epochs."""
        self.assigned = set(partitions)
        self.swept = None
        self.epochs = None
        self.fenced_at = None
        self.revoked = False
        self._drop_unless(lambda partition: partition in self.assigned)

    def _drop_unless(self, keep: Callable[[int], bool]) -> None:
        """Drop the cached customers of the partitions `keep` refuses (saved in the store)."""
        gone = [cid for cid, partition in self.partition_of.items() if not keep(partition)]
        self.pipeline.engine.drop(gone)
        for cid in gone:
            del self.partition_of[cid]
        self._cached()

    def _unknown_skus(self, more: int) -> None:
        metrics.UNKNOWN_SKUS.inc(more)
        before, self.unknown_skus = self.unknown_skus, self.unknown_skus + more
        if len(str(self.unknown_skus)) > len(str(before)):  # a power of ten passed
            log.warning(
                "%d events so far name SKUs not in the catalog (e.g. %s): nothing is offered "
                "around them; are TACT_CATALOG and the events from the same store?",
                self.unknown_skus,
                self.pipeline.engine.unknown_sku_example,
            )

    def forget(self) -> None:
        """Partitions may move to another worker: a batch in flight must not be acknowledged,
        and nothing is decided until the next assignment. What is cached stays (it is all in
        the checkpoint) for `assign` to keep what this worker still owns."""
        self.generation += 1
        if self.epochs is not None:
            self.kept = dict(self.epochs)
        self.assigned = set()
        self.epochs = None
        self.revoked = True

    def reset(self) -> None:
        """Drop everything in memory the checkpoint does not hold (customer states, models,
        offsets): the next batch starts again from the checkpoint."""
        self.committed = None
        self.swept = None
        self.partition_of = {}
        self.journal.clear()
        self.pipeline.engine.reset()
        self.models_at = -1  # (the models too: loaded whole again)
        self._cached()

    def _cached(self) -> None:
        """The customers in memory, on the gauge."""
        engine = self.pipeline.engine
        metrics.CACHED.labels("hot").set(len(engine.customers))
        metrics.CACHED.labels("cold").set(len(engine.cold))

    def owes_closings(self) -> bool:
        """Whether a batch's bound on closings left windows the watermark passed open, and
        this worker may handle a batch to close them (it owns partitions, not fenced)."""
        return (
            self.pipeline.engine.behind()
            and not self.revoked
            and self.fenced_at is None
            and bool(self.assigned)
        )

    async def handle_until_done(
        self, records: Sequence[Record], first_wait_s: float = _RETRY_FIRST_S
    ) -> bool:
        """`handle`, again from the checkpoint after each failure, waiting longer each time,
        until it succeeds or `batch_retry_s` has passed since the first failure (then
        BatchFailed). Every attempt decides at the wall-clock time of the first, so the
        records sent before a failure are sent again identical (at least once)."""
        now = time.time()
        give_up = None
        wait = first_wait_s
        while True:
            if self.revoked:  # owned by nobody here until Kafka assigns partitions again
                return self._rebalanced("revoked")
            if self.fenced_at is not None:
                if time.monotonic() - self.fenced_at > _FENCED_EXIT_S:
                    raise BatchFailed(
                        "another worker claimed this worker's partitions and Kafka has not "
                        f"assigned it any since, for {_FENCED_EXIT_S:g} s"
                    )
                # not acknowledged: the partitions' owner handles them
                return self._rebalanced("revoked")
            generation = self.generation
            try:
                return await self.handle(records, now)
            except Fenced as exc:
                if generation != self.generation:
                    # Kafka took the partitions and (some of them) gave them back meanwhile:
                    # this worker's own new claim refused the old commit. Not a zombie.
                    return self._rebalanced("overtaken")
                self.fenced_at = time.monotonic()
                metrics.FENCED.inc()
                log.warning(
                    "state read or checkpoint refused: %s; this worker was presumably paused "
                    "past its session timeout. The batch of %d records is dropped "
                    "unacknowledged and nothing is handled until Kafka assigns partitions again",
                    exc,
                    len(records),
                )
                return False
            except Exception as exc:
                if give_up is None:
                    give_up = time.monotonic() + self.settings.batch_retry_s
                if time.monotonic() + wait > give_up:
                    raise BatchFailed(
                        f"a batch of {len(records)} records could not be sent or checkpointed "
                        f"for {self.settings.batch_retry_s:g} s (TACT_BATCH_RETRY_S); last "
                        f"error: {type(exc).__name__}: {exc}"
                    ) from exc
                metrics.BATCH_RETRIES.inc()
                log.warning(
                    "a batch of %d records failed (%s: %s); its state is dropped and it is "
                    "handled again from the checkpoint in %.1f s",
                    len(records),
                    type(exc).__name__,
                    exc,
                    wait,
                )
            await asyncio.sleep(wait)
            wait = min(wait * 2.0, _RETRY_MAX_S)

    async def handle(self, records: Sequence[Record], now: float | None = None) -> bool:
        """Process one batch (deciding at wall-clock `now`, default the current time); True
        when it was checkpointed and may be acknowledged. On any failure the state in memory
        is reset to the checkpoint before the error goes on."""
        try:
            return await self._handle(records, time.time() if now is None else now)
        except BaseException:
            self.reset()
            raise

    async def _handle(self, records: Sequence[Record], now: float) -> bool:
        started = time.perf_counter()
        generation = self.generation
        engine = self.pipeline.engine
        if self.epochs is None and not await self.claim():
            return self._rebalanced("claim")  # a rebalance came during the claim
        if self.assigned and any(r.partition not in self.assigned for r in records):
            # Read before a rebalance, from partitions now owned elsewhere: not ours to write.
            # Kafka sent this worker's partitions back to their committed offsets at the
            # assignment, so its own records in the batch come again.
            return self._rebalanced("moved")
        if self.committed is None:
            self.committed, self.offsets_read = {}, set()
            await self._load_models()
            self.saved = await self.store.load_clocks(sorted(self.assigned))
            if self.assigned:
                engine.set_clocks(self.saved)
        elif self.learner and time.monotonic() >= self.version_due and await self._published():
            await self._load_models()  # the learner published newer models: between batches
            engine.set_clocks(dict(engine.clocks))
        unread = (self.assigned | {r.partition for r in records}) - self.offsets_read
        if unread:
            self.committed.update(await self.store.load_offsets(unread))
            self.offsets_read |= unread
        prepared = self.pipeline.prepare(records, self.committed)
        for record, item in prepared.items:
            if isinstance(item, Envelope):
                self.partition_of[item.customer_id] = record.partition
        batch_customers = prepared.customer_ids()
        missing = [cid for cid in batch_customers if not engine.knows(cid)]
        engine.restore(
            await self.store.load_customers({c: self.partition_of[c] for c in missing}, self.epochs)
        )
        gone = await self._sweep()
        if generation != self.generation:  # revoked meanwhile: keep nothing of this batch
            self.reset()
            return self._rebalanced("overtaken")
        duplicates, unknown = engine.duplicates, engine.unknown_sku_events
        result = self.pipeline.decide(prepared, now=now)
        if engine.duplicates > duplicates:
            metrics.DUPLICATES.inc(engine.duplicates - duplicates)
        if engine.unknown_sku_events > unknown:
            self._unknown_skus(engine.unknown_sku_events - unknown)
        await asyncio.gather(*await self._send_all(result))
        if generation != self.generation:  # revoked meanwhile: keep nothing of this batch
            self.reset()  # (what it sent goes out again from its next owner: at least once)
            return self._rebalanced("overtaken")
        due = {
            cid: (self.partition_of[cid], engine.next_window_end(cid))
            for cid in result.touched
            if cid in self.partition_of
        }
        due.update(gone)
        clocks = {  # (those that moved: on a cluster each partition is a transaction)
            p: t for p, t in engine.clocks.items() if p in self.assigned and self.saved.get(p) != t
        }
        saved = engine.dump(result.touched)
        states = {cid: (self._partition(cid), blob) for cid, blob in saved.items()}
        if self.learner:  # what it learned goes to the learner, with the checkpoint
            journal = {p: codec.dumps(changes) for p, changes in self.journal.items()}
            await self.store.commit(
                states, prepared.offsets, {}, due, self.epochs, clocks, journal=journal
            )
            self.journal.clear()
        else:  # (learning off: nothing learned to keep; the clocks are the partitions')
            changed = engine.models_changes()
            models = changed if engine.policy.learning.enabled else {}
            await self.store.commit(states, prepared.offsets, models, due, self.epochs, clocks)
        self.committed.update(prepared.offsets)
        self.saved.update(clocks)
        # Everything is in the store now: the least recently used may go cold, or go; those
        # made states again only to close windows go cold first (as the bytes just saved).
        limit, hot = self.settings.max_cached_customers, self.settings.hot_customers
        for cid in engine.trim(batch_customers, limit, hot, saved):
            self.partition_of.pop(cid, None)
        self._cached()
        _count(result, prepared.redelivered, len(records), time.perf_counter() - started)
        return True

    async def _published(self) -> bool:
        """Whether the learner has published newer models (asked at most every
        `_VERSION_EVERY_S`, not at every batch: a round trip to Redis)."""
        self.version_due = time.monotonic() + _VERSION_EVERY_S
        return await self.store.models_version() != self.models_at

    async def _load_models(self) -> None:
        """The models as checkpointed, or as the learner last published them (then what the
        engine learns is recorded in `journal`, not applied)."""
        engine = self.pipeline.engine
        # Newer models of the learner: only the fields changed since those in use (a big
        # catalog's co-purchase rows are megabytes: benchmarks/swap.py).
        since = await self.store.load_models_since(self.models_at) if self.models_at > 0 else None
        counter = 0 if since is not None else await self.store.models_version()
        fields = since if since is not None else await self.store.load_models()
        # which publication the hash holds (the learner writes its number with the models;
        # else the counter, read first: the models read after it are at least as new)
        published = fields.pop("version", None)
        version = int(published) if published is not None else counter
        if self.learner:
            self.models_at = version  # (newer ones: next batch)
        elif version and not self.warned_learner:
            self.warned_learner = True
            log.warning(
                "a learner publishes the models of this app id (version %d) but TACT_LEARNER "
                "is not set: this worker learns itself and overwrites them; set "
                "TACT_LEARNER=true on every worker of the group",
                version,
            )
        engine.restore_models(fields, changed_only=since is not None)
        if self.learner:
            engine.models.sink = self._journal
            engine.models.publication = version

    def _journal(self, change: tuple[Any, ...]) -> None:
        """Record a change of what is learned under the input partition of the customer it
        goes with (committed in one transaction with that customer's state)."""
        partition = self._partition(self.pipeline.engine.models.subject)
        self.journal.setdefault(partition, []).append(change)

    def _partition(self, customer_id: str) -> int:
        """The input partition of a customer in memory (every one came from a record or a
        partition's due index; else where Kafka's default partitioner puts their id)."""
        partition = self.partition_of.get(customer_id)
        if partition is None:
            counts = self.pipeline.partitions
            if not counts:  # (a worker told no partition count: tests only)
                raise LookupError(f"no input partition known for customer {customer_id!r}")
            partition = self.partition_of[customer_id] = partition_of(
                customer_id, next(iter(counts.values()))
            )
        return partition

    @staticmethod
    def _rebalanced(reason: str) -> bool:
        """A batch not checkpointed nor acknowledged because of a rebalance (counted by
        `reason`: app/io/metrics.py)."""
        metrics.REBALANCED.labels(reason).inc()
        return False

    async def claim(self) -> bool:
        """Claim the assigned partitions (at Kafka's assignment; else before the next batch),
        then read what their last owner checkpointed. False when a rebalance came meanwhile:
        nothing claimed is kept, the next assignment claims again."""
        async with self._claiming:
            if self.epochs is not None:  # claimed for this assignment already
                return True
            generation = self.generation
            epochs = await self._claim()
            if generation != self.generation:
                return False
            self.epochs = epochs
            self.committed = None  # offsets, models and clocks: read after the claim
            return True

    async def _claim(self) -> dict[int, int]:
        """Claim this worker's partitions. A partition kept through a rebalance keeps its
        cached customers only if nobody claimed it in between (its epoch moved by exactly
        one); the others' customers are dropped, to be loaded from the checkpoint."""
        epochs = await self.store.claim(sorted(self.assigned))
        kept, self.kept = self.kept, {}
        self._drop_unless(lambda p: p in epochs and kept.get(p, -1) + 1 == epochs[p])
        return epochs

    async def _sweep(self) -> dict[str, tuple[int, None]]:
        """Load the customers of this worker's partitions whose windows ended before the
        watermark and who are not in memory (evicted, or never back since), and close those
        windows: without this, a customer who never returns would never get their Outcomes.
        Looked at once the watermark has moved `_SWEEP_EVERY_S` since the last look (or when
        that one found more than `_SWEEP_LIMIT`). Returns the due entries to drop (customers
        whose state has expired)."""
        engine = self.pipeline.engine
        watermark = engine.models.watermark
        if not watermark or not self.assigned:
            return {}
        if self.swept is not None and self.swept <= watermark < self.swept + _SWEEP_EVERY_S:
            return {}  # (what ends meanwhile closes a second of event time late at most)
        due: dict[str, int] = {}
        ended = await self.store.load_due(sorted(self.assigned), watermark, _SWEEP_LIMIT)
        full = any(len(ids) >= _SWEEP_LIMIT for ids in ended.values())
        self.swept = None if full else watermark  # (more to load: again at the next batch)
        for partition, ids in ended.items():
            for cid in ids:  # (cold ones' windows close on the schedule, as states')
                if not engine.knows(cid):
                    due[cid] = partition
        if not due:
            return {}
        states = await self.store.load_customers(due, self.epochs)
        for cid in states:  # (before they are restored: that closes what ended)
            self.partition_of[cid] = due[cid]
        engine.restore(states)
        found = [cid for cid in due if engine.knows(cid)]
        metrics.DUE_LOADED.inc(len(found))
        return {cid: (partition, None) for cid, partition in due.items() if cid not in found}

    async def _send_all(self, result: BatchResult) -> list[Awaitable[Any]]:
        """Hand every action, outcome and dead letter to the producer, together; return their
        deliveries."""
        unknown = [(_WORKER_HEADER, _WORKER), (_EPOCH_HEADER, b"-1")]
        headers = {  # per input partition, made once per batch
            p: [(_WORKER_HEADER, _WORKER), (_EPOCH_HEADER, str(e).encode())]
            for p, e in (self.epochs or {}).items()
        }
        settings, partition_of = self.settings, self.partition_of
        out: list[OutRecord] = [
            (
                settings.topic_actions,
                action.customer_id.encode("utf-8"),
                encode(action),
                headers.get(partition_of.get(action.customer_id, -1), unknown),
            )
            for action in result.actions
        ]
        out += [
            (
                settings.topic_outcomes,
                outcome.customer_id.encode("utf-8"),
                encode_outcome(outcome),
                None,
            )
            for outcome in result.outcomes
        ]
        for letter in result.dead_letters:
            record = letter.record
            log.warning(
                "dead letter: %s (%s)",
                letter.reason,
                letter.detail,
                extra={
                    "topic": record.topic,
                    "partition": record.partition,
                    "offset": record.offset,
                    "reason": letter.reason,
                },
            )
            out.append((settings.topic_dead_letters, record.key, record.value, letter.headers()))
        return await self.send(out) if out else []


def _count(result: BatchResult, redelivered: int, size: int, seconds: float) -> None:
    """The batch's figures into the metrics, one update per label (not one per record)."""
    for event_type, n in result.events_by_type.items():
        metrics.EVENTS.labels(event_type).inc(n)
    for reason, n in Counter(letter.reason for letter in result.dead_letters).items():
        metrics.DEAD_LETTERS.labels(reason).inc(n)
    for status, n in Counter(outcome.status for outcome in result.outcomes).items():
        metrics.OUTCOMES.labels(status).inc(n)
    for (play, channel), n in Counter((a.play, a.channel) for a in result.actions).items():
        metrics.ACTIONS.labels(play, channel).inc(n)
    quiet = Counter(s.channel for action in result.actions for s in action.suppress)
    for channel, n in quiet.items():
        metrics.SUPPRESSIONS.labels(channel).inc(n)
    if redelivered:
        metrics.REDELIVERED.inc(redelivered)
    if result.stale:
        metrics.STALE.inc(result.stale)
    for decision in result.decision_seconds:
        metrics.DECISION_SECONDS.observe(decision)
    if size:  # (a batch without records only closes windows left by the last one's bound)
        metrics.BATCH_SIZE.observe(size)
    metrics.BATCH_SECONDS.observe(seconds)
