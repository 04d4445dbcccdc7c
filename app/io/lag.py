"""Consumer lag of a group, per topic and partition, as Kafka's own consumer-groups tool
reports it (committed offset, log end offset, their difference), plus the time lag: the age of
the oldest record not yet processed (the one at the committed offset). Faust's own topic in the
worker's group (`<app id>-__assignor-__leader`, for electing a leader; nothing is processed
from it) is left out."""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

from kafka import KafkaConsumer, TopicPartition
from kafka.admin import OffsetSpec
from kafka.errors import KafkaError

from app.errors import ConfigurationError, DependencyUnavailable
from app.io import clients
from app.settings import Settings

_FAUST_LEADER_TOPIC = "-__assignor-__leader"


def is_faust_internal(topic: str) -> bool:
    """Faust's leader-election topic, which every worker is assigned and nothing reads."""
    return topic.endswith(_FAUST_LEADER_TOPIC)


@dataclass(frozen=True, slots=True)
class PartitionLag:
    group: str
    topic: str
    partition: int
    committed: int | None  # None: the group owns the partition but has committed nothing
    end: int
    lag: int | None
    time_lag_s: float | None  # age of the oldest unprocessed record; 0 when caught up
    consumer: str  # member id, or "-" when no member owns it now
    host: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _members(description: dict[str, Any]) -> dict[tuple[str, int], tuple[str, str]]:
    """(topic, partition) -> (member id, host) from describe_groups."""
    owners: dict[tuple[str, int], tuple[str, str]] = {}
    for member in description.get("members") or ():
        assignment = member.get("member_assignment") or {}
        for item in assignment.get("assigned_partitions") or ():
            for partition in item.get("partitions") or ():
                owners[(str(item["topic"]), int(partition))] = (
                    str(member.get("member_id", "-")),
                    str(member.get("client_host", "-")).lstrip("/"),
                )
    return owners


def group_lag(
    settings: Settings, groups: Iterable[str], now: float | None = None
) -> list[PartitionLag]:
    """Lag of every partition each group has committed offsets for or owns."""
    bootstrap = settings.kafka_bootstrap
    admin = clients.admin(settings, client_id="tact-lag")
    consumer: KafkaConsumer | None = None
    try:
        known = {g["group_id"] for g in admin.list_groups()}
        rows: list[PartitionLag] = []
        for group in groups:
            if group not in known:
                raise ConfigurationError(f"no consumer group {group!r} on {bootstrap}")
            committed = admin.list_group_offsets({group: None}).get(group, {})
            owners = _members(admin.describe_groups([group]).get(group, {}))
            seen = {(tp.topic, tp.partition) for tp in committed} | set(owners)
            partitions = sorted((t, p) for t, p in seen if not is_faust_internal(t))
            tps = [TopicPartition(t, p) for t, p in partitions]
            if not tps:
                continue
            ends = admin.list_partition_offsets({tp: OffsetSpec.LATEST for tp in tps})
            if consumer is None:
                consumer = clients.consumer(settings, group_id=None, enable_auto_commit=False)
            for tp in tps:
                meta = committed.get(tp)
                offset = meta.offset if meta is not None and meta.offset >= 0 else None
                end = ends[tp].offset
                lag = max(end - offset, 0) if offset is not None else None
                member, host = owners.get((tp.topic, tp.partition), ("-", "-"))
                age = _age(consumer, tp, offset, lag, now)
                rows.append(
                    PartitionLag(group, tp.topic, tp.partition, offset, end, lag, age, member, host)
                )
        return rows
    except KafkaError as exc:
        raise DependencyUnavailable(f"reading consumer lag failed: {exc!r}") from exc
    finally:
        admin.close()
        if consumer is not None:
            consumer.close()


def _age(
    consumer: KafkaConsumer,
    tp: TopicPartition,
    offset: int | None,
    lag: int | None,
    now: float | None,
) -> float | None:
    """Seconds since the record at the committed offset was appended (0 when caught up)."""
    if offset is None or lag is None:
        return None
    if lag == 0:
        return 0.0
    consumer.assign([tp])
    consumer.seek(tp, offset)
    for _ in range(5):
        records = consumer.poll(timeout_ms=1000, max_records=1).get(tp, [])
        if records:
            appended = float(records[0].timestamp) / 1000.0
            return max((now if now is not None else time.time()) - appended, 0.0)
    return None
