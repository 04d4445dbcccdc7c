"""Reading a time range of a topic, for reports and backtests, without a consumer group.

Every partition is assigned directly (no group: the live workers' offsets are never touched),
sought to the first offset at or after `since` (Kafka's offsets-for-times: no earlier offset
holds a record that late), and read up to the end offset as of the start, keeping the records
whose timestamps are in the range. Timestamps need not increase along a partition (older data
produced after newer, a backfill), so a record after `until` does not end the read.

The worker's own records (Actions, Outcomes) are stamped when it writes them, not with the time
of the event that prompted them: a backfill of last year's events is decided today.
`read_decided` reads those by the decision's own time (`ts`, `decided_at`): from the offset of
`since` (less the future skew an event may have) to the end, keeping the records decided in
the range.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime

from kafka import KafkaConsumer, TopicPartition

from app import codec
from app.errors import ConfigurationError, DependencyUnavailable
from app.io import clients
from app.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class TimedRecord:
    timestamp_ms: int
    topic: str
    partition: int
    offset: int
    value: bytes
    headers: tuple[tuple[str, bytes], ...] = ()


@dataclass(slots=True)
class RangeProgress:
    topic: str
    read: int = 0
    remaining: int = 0  # records between the read position and the end offsets
    outside: int = 0  # records read whose timestamps are outside the range


def read_decided(
    settings: Settings,
    topic: str,
    since: float | None,
    until: float | None,
    field: str,
    progress: Callable[[RangeProgress], None] | None = None,
) -> tuple[list[bytes], int]:
    """The values of the worker's records on `topic` decided in [since, until] by their own
    `field` (an ISO time), and how many more were read, decided outside it. A record no earlier
    than its decision's event (less `max_future_skew_s`) bounds the read from below; nothing
    bounds it from above. A value that cannot be read is kept, for the reader to count."""
    lower = None if since is None else int((since - settings.max_future_skew_s) * 1000)
    kept: list[bytes] = []
    outside = 0
    for value in read_range(settings, topic, lower, None, progress):
        try:
            t = datetime.fromisoformat(codec.loads(value)[field]).timestamp()
        except (ValueError, TypeError, KeyError):
            kept.append(value)
            continue
        if (since is not None and t < since) or (until is not None and t > until):
            outside += 1
        else:
            kept.append(value)
    return kept, outside


def read_range(
    settings: Settings,
    topic: str,
    since_ms: int | None,
    until_ms: int | None,
    progress: Callable[[RangeProgress], None] | None = None,
    poll_ms: int = 500,
) -> Iterator[bytes]:
    """The values of `topic`'s records with since_ms <= timestamp <= until_ms (either bound
    may be None), partition by partition in offset order."""
    for record in read_records(settings, topic, since_ms, until_ms, progress, poll_ms):
        yield record.value


def read_records(
    settings: Settings,
    topic: str,
    since_ms: int | None,
    until_ms: int | None,
    progress: Callable[[RangeProgress], None] | None = None,
    poll_ms: int = 500,
) -> Iterator[TimedRecord]:
    """As read_range, with each record's timestamp and position."""
    bootstrap = settings.kafka_bootstrap
    consumer = clients.consumer(
        settings,
        enable_auto_commit=False,
        group_id=None,
        auto_offset_reset="earliest",
        consumer_timeout_ms=10_000,
    )
    try:
        partitions = consumer.partitions_for_topic(topic)
        if not partitions:
            raise ConfigurationError(f"topic {topic!r} does not exist on {bootstrap}")
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        ends = consumer.end_offsets(tps)
        starts = consumer.beginning_offsets(tps)
        if since_ms is not None:
            found = consumer.offsets_for_times({tp: since_ms for tp in tps})
            starts = {tp: (found[tp].offset if found[tp] is not None else ends[tp]) for tp in tps}
        state = RangeProgress(topic, 0, sum(max(ends[tp] - starts[tp], 0) for tp in tps))
        for tp in tps:
            if starts[tp] >= ends[tp]:
                continue
            consumer.assign([tp])
            consumer.seek(tp, starts[tp])
            yield from _partition(
                consumer, tp, ends[tp], until_ms, state, progress, poll_ms, since_ms
            )
            if progress is not None:
                progress(state)  # the partition's last figures (it may end mid-batch)
    finally:
        consumer.close()


def _partition(
    consumer: KafkaConsumer,
    tp: TopicPartition,
    end: int,
    until_ms: int | None,
    state: RangeProgress,
    progress: Callable[[RangeProgress], None] | None,
    poll_ms: int,
    since_ms: int | None = None,
) -> Iterator[TimedRecord]:
    position = consumer.position(tp)
    idle = 0
    while position < end:
        batch = consumer.poll(timeout_ms=poll_ms).get(tp, [])
        if not batch:
            idle += 1
            if idle > 40:
                raise DependencyUnavailable(
                    f"{tp.topic}:{tp.partition} stopped at offset {position}"
                )
            continue
        idle = 0
        for record in batch:
            if record.offset >= end:
                return
            position = record.offset + 1
            state.read += 1
            state.remaining -= 1
            outside = (until_ms is not None and record.timestamp > until_ms) or (
                since_ms is not None and record.timestamp < since_ms
            )
            if outside:
                state.outside += 1
            elif record.value is not None:
                yield TimedRecord(
                    record.timestamp,
                    tp.topic,
                    tp.partition,
                    record.offset,
                    record.value,
                    tuple(record.headers or ()),
                )
        if progress is not None:
            progress(state)
