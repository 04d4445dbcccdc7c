"""One batch of input records through the engine, with no I/O: the worker's pure middle.

The worker (agents/worker.py) reads a batch, asks `prepare` which records are new and which
customers' states it must load, loads them, calls `decide`, sends what comes back, and
checkpoints. Nothing here knows about Kafka or Redis.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from app.actions import expire_stale
from app.decode import decode_event
from app.engine import DecisionEngine
from app.errors import BadInput
from app.partitioning import partition_of
from app.store import partition_key
from schemas import Action, Envelope, Outcome, TopicFamily

log = logging.getLogger(__name__)

DEAD_LETTER_HEADER_PREFIX = "tact.dlq."


@dataclass(frozen=True, slots=True)
class Record:
    """One consumed record, as the broker gave it."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp_ms: int | None = None

    @property
    def partition_key(self) -> str:
        return partition_key(self.topic, self.partition)


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A record tact could not use, and why. Sent with its original key and bytes."""

    record: Record
    reason: str
    detail: str

    def headers(self) -> list[tuple[str, bytes]]:
        """Kafka headers carrying the reason and where the record came from."""
        r = self.record
        fields = {
            "reason": self.reason,
            "detail": self.detail,
            "topic": r.topic,
            "partition": str(r.partition),
            "offset": str(r.offset),
            "timestamp": "" if r.timestamp_ms is None else str(r.timestamp_ms),
        }
        return [(DEAD_LETTER_HEADER_PREFIX + k, v.encode("utf-8")) for k, v in fields.items()]


@dataclass(slots=True)
class Prepared:
    """A batch after deduplication and decoding, before any decision."""

    items: list[tuple[Record, Envelope | DeadLetter]]
    redelivered: int
    offsets: dict[str, int]

    def customer_ids(self) -> set[str]:
        return {item.customer_id for _, item in self.items if isinstance(item, Envelope)}


@dataclass(slots=True)
class BatchResult:
    """What a batch produced, for the worker to send, count and checkpoint."""

    actions: list[Action] = field(default_factory=list)
    outcomes: list[Outcome] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    events_by_type: Counter[str] = field(default_factory=Counter)
    touched: set[str] = field(default_factory=set)
    stale: int = 0  # events that waited past the policy's freshness limit
    decision_seconds: list[float] = field(default_factory=list)  # per event, for the metrics


_OWNERS_CACHED = 200_000
# A worker's batch of N records closes at most this many times N windows of the attribution
# schedule (a batch of 500: about 0.2 s of closing and checkpointing); the rest wait for the
# next batch, which comes at once (agents/decide.py), records or not.
CLOSINGS_PER_RECORD = 4
DEFAULT_MAX_FUTURE_S = 300.0  # events dated further after the worker's clock: dead letters


class BatchPipeline:
    """Deduplicate, decode and decide one batch of records."""

    def __init__(
        self,
        engine: DecisionEngine,
        families: Mapping[str, TopicFamily],
        max_event_bytes: int,
        max_future_s: float = DEFAULT_MAX_FUTURE_S,
        partitions: Mapping[str, int] | None = None,
        close_limit: int | None = None,
    ) -> None:
        self.engine = engine
        # Windows the attribution schedule closes per batch at most (None: all that ended):
        # the rest close in the next batches, first thing (see `decide`).
        self.close_limit = close_limit
        self.families = dict(families)
        self.max_event_bytes = max_event_bytes
        self.max_future_s = max_future_s
        # Input topic -> its partition count: a record not on its customer's partition is a
        # dead letter (`misrouted`). None: not checked (a replay, one partition).
        self.partitions = dict(partitions or {})
        self._owner: dict[str, int] = {}  # customer -> partition (bounded: cleared when full)
        freshness = engine.policy.freshness
        limit = freshness.max_lag_seconds
        self.stale_after = limit if limit is not None else float("inf")
        self._stale_marks = (frozenset(freshness.close_channels), frozenset(freshness.deny_frames))

    def prepare(self, records: Sequence[Record], committed: Mapping[str, int]) -> Prepared:
        """Drop records below the checkpoint (already in the state) and decode the rest."""
        items: list[tuple[Record, Envelope | DeadLetter]] = []
        offsets: dict[str, int] = {}
        redelivered = 0
        for record in records:
            key = record.partition_key
            checkpoint = committed.get(key, 0)
            if record.offset < checkpoint:
                redelivered += 1
                continue
            # Never below the checkpoint: a batch of redelivered records must not move it back.
            offsets[key] = max(offsets.get(key, checkpoint), record.offset + 1)
            item = self._decode(record)
            if self.partitions and not isinstance(item, DeadLetter):
                # Before anything loads or touches the customer: another worker owns it.
                item = self._misrouted(record, item.customer_id) or item
            items.append((record, item))
        return Prepared(items, redelivered, offsets)

    def _decode(self, record: Record) -> Envelope | DeadLetter:
        try:
            return decode_event(record.value, self.families.get(record.topic), self.max_event_bytes)
        except BadInput as exc:
            return DeadLetter(record, exc.reason, exc.detail)

    def _misrouted(self, record: Record, customer_id: str) -> DeadLetter | None:
        count = self.partitions.get(record.topic, 1)
        if count <= 1:
            return None
        owner = self._owner.get(customer_id)
        if owner is None:
            if len(self._owner) >= _OWNERS_CACHED:
                self._owner.clear()
            owner = self._owner[customer_id] = partition_of(customer_id, count)
        if owner == record.partition:
            return None
        return DeadLetter(
            record,
            "misrouted",
            f"customer {customer_id!r} belongs on partition {owner} of {count} (murmur2 of "
            f"the customer_id key, Kafka's default partitioner), not {record.partition}: "
            "another worker owns this customer. Key events by customer_id and use murmur2 "
            "(librdkafka / confluent-kafka: partitioner=murmur2_random)",
        )

    def decide(self, prepared: Prepared, now: float | None = None) -> BatchResult:
        """Run each valid event through the engine, in order. With `now` (wall-clock seconds),
        each event's lag is how long its record waited in Kafka (`now` - the record's
        timestamp): past the freshness limit (the worker fell behind), its Actions for the
        page the customer has left, or with urgency, go out already expired
        (`actions.expire_stale`; the engine's decision and state are the same as on time, so a
        redelivery after any delay changes nothing in them); and an event dated more
        than `max_future_s` after `now` is a dead letter (`future_timestamp`): folded in, it
        would move the watermark and close every attribution window in memory at once."""
        result = BatchResult()
        # First the windows left ended by the last batch's bound, then the events' (together
        # at most `close_limit`): a watermark that passes the ends of 100,000 windows at once
        # (a backlog) must not thaw and checkpoint all their customers in one batch. Closing
        # later changes no Outcome (each is closed at its window's end, and a customer's own
        # event closes their ended windows before it is folded in).
        self.engine.close_behind(self.close_limit)
        for record, item in prepared.items:
            if isinstance(item, DeadLetter):
                result.dead_letters.append(item)
                continue
            ahead = 0.0 if now is None else item.ts.timestamp() - now
            if ahead > self.max_future_s:
                detail = (
                    f"dated {item.ts.isoformat()}, {ahead:,.0f} s after this worker's clock "
                    f"(at most {self.max_future_s:g} s: TACT_MAX_FUTURE_SKEW_S)"
                )
                result.dead_letters.append(DeadLetter(record, "future_timestamp", detail))
                continue
            stale = (
                now is not None
                and record.timestamp_ms is not None
                and now - record.timestamp_ms / 1000.0 > self.stale_after
            )
            started = time.perf_counter()
            try:
                actions = self.engine.process_event(item, record.partition)
            except Exception as exc:  # a defect in the core must not stop the stream
                log.exception(
                    "engine failed on event %s",
                    item.event_id,
                    extra={
                        "topic": record.topic,
                        "partition": record.partition,
                        "offset": record.offset,
                        "customer": item.customer_id,
                    },
                )
                result.dead_letters.append(DeadLetter(record, "internal_error", repr(exc)[:1000]))
                if self.engine.knows(item.customer_id):
                    # Whatever the engine changed before failing is in its cache: checkpoint it
                    # so the cache and the store never disagree.
                    result.touched.add(item.customer_id)
                continue
            result.decision_seconds.append(time.perf_counter() - started)
            result.events_by_type[item.type] += 1
            result.touched.add(item.customer_id)
            if stale:
                result.stale += 1
                actions = [expire_stale(a, *self._stale_marks) for a in actions]
            result.actions.extend(actions)
        # Windows closed by this batch (of its customers or, by the watermark, of others in
        # memory): their states changed too, so they are checkpointed with the batch.
        engine = self.engine
        outcomes = engine.take_outcomes()
        result.touched.update(o.customer_id for o in outcomes if engine.knows(o.customer_id))
        # No state is checkpointed with a window the watermark passed still open (left by the
        # bound): reloaded after a restart or an eviction, at that same watermark, nothing would
        # close it before a late order counted in it. Those customers' owed windows close now.
        engine.settle(result.touched)
        result.outcomes = outcomes + engine.take_outcomes()
        return result
