"""Producing events into `clickstream` and `orders`: keyed by customer, each record's Kafka
timestamp set to the event's time, so a time range of the topics (`tact replay --from-topics`,
`tact report --from-topics`) is a range of event time."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from kafka import KafkaProducer
from kafka.errors import KafkaConnectionError, KafkaError, RetriableError

from app import codec
from app.errors import DependencyUnavailable
from app.io import clients
from app.settings import Settings
from schemas import FAMILY_OF_TYPE
from schemas.types import event_seconds

Record = tuple[str, bytes, bytes, int]  # (family, key, value, timestamp in ms)
_WHY = {
    "InvalidTimestampError": "the event's time is further from the broker's clock than the "
    "topic allows (Kafka 4 refuses records more than an hour ahead: "
    "message.timestamp.after.max.ms)",
    "InvalidRecordError": "the broker found the record invalid (often: a timestamp out of the "
    "topic's range)",
    "MessageSizeTooLargeError": "the record is larger than the topic allows",
}


@dataclass
class Produced:
    """What the broker acknowledged (per topic) and what it refused (per error)."""

    sent: Counter[str] = field(default_factory=Counter)
    refused: Counter[str] = field(default_factory=Counter)
    why: dict[str, str] = field(default_factory=dict)  # error -> what it means

    def refusals(self) -> str:
        """The refused records in a line, empty when there are none."""
        return "; ".join(
            f"{n:,} refused by the broker: {name} ({self.why[name]})"
            for name, n in self.refused.most_common()
        )


def produce(
    settings: Settings,
    events: Iterable[dict[str, Any]],
    rate: float | None = None,
    progress: Callable[[int], None] | None = None,
) -> Produced:
    """Send every event to its family's topic; returns what the broker acknowledged and
    refused. `rate` caps events per second (None: as fast as the broker takes them)."""
    records = (
        (
            FAMILY_OF_TYPE[event["type"]],
            str(event["customer_id"]).encode("utf-8"),
            codec.dumps(event),
            int(event_seconds(event["ts"]) * 1000),
        )
        for event in events
    )
    return produce_records(settings, records, rate, progress)


def produce_records(
    settings: Settings,
    records: Iterable[Record],
    rate: float | None = None,
    progress: Callable[[int], None] | None = None,
) -> Produced:
    """Send (family, key, value, timestamp) records to the family's topic: `produce` for
    records already encoded (`tact produce` sends each line as it was written)."""
    topics = {"clickstream": settings.topic_clickstream, "orders": settings.topic_orders}

    def connect() -> KafkaProducer:
        return clients.producer(
            settings,
            linger_ms=20,
            max_request_size=8 * 1024 * 1024,
        )

    producer = connect()
    done = Produced()
    again: list[tuple[str, bytes, bytes, int]] = []  # refused: maybe for another record
    lost: list[BaseException] = []  # not refused: the broker could not be reached

    def refuse(exc: BaseException) -> None:
        name = type(exc).__name__
        done.refused[name] += 1
        done.why.setdefault(name, _WHY.get(name, str(exc)))

    started = time.monotonic()
    try:
        for n, (family, key, value, timestamp_ms) in enumerate(records, start=1):
            topic = topics[family]
            record = (topic, key, value, timestamp_ms)
            future = producer.send(topic, key=key, value=value, timestamp_ms=timestamp_ms)
            future.add_callback(lambda _, topic=topic: done.sent.update((topic,)))
            future.add_errback(lambda exc, record=record: _failed(exc, record, again, lost))
            if rate:
                ahead = n / rate - (time.monotonic() - started)
                if ahead > 0:
                    time.sleep(ahead)
            if progress is not None and n % 5000 == 0:
                progress(n)
        producer.flush()
        if lost:
            raise DependencyUnavailable(
                f"{len(lost):,} records could not be produced to {settings.kafka_bootstrap}: "
                f"{lost[0]!r}"
            )
        # A broker refuses a whole batch for one bad record, and the producer then fails
        # what follows on that partition: send each refused record again on its own, from a
        # fresh producer after every refusal. Those land after the records sent since, so a
        # customer's order can change: `tact produce` keeps future-dated events (the usual
        # cause) out of the batches.
        retry: KafkaProducer | None = None
        for topic, key, value, timestamp_ms in again:
            retry = retry or connect()
            try:
                retry.send(topic, key=key, value=value, timestamp_ms=timestamp_ms).get(30)
                done.sent[topic] += 1
            except KafkaError as exc:
                if _unreachable(exc):
                    raise
                refuse(exc)
                retry.close()
                retry = None
        if retry is not None:
            retry.close()
    except KafkaError as exc:
        raise DependencyUnavailable(f"producing to Kafka failed: {exc!r}") from exc
    finally:
        producer.close()
    return done


def _unreachable(exc: BaseException) -> bool:
    """The broker could not be reached in time (as opposed to refusing the record)."""
    return isinstance(exc, RetriableError | KafkaConnectionError)


def _failed(exc: BaseException, record: Any, again: list[Any], lost: list[BaseException]) -> None:
    """A send failed (in the producer's thread): retry a refusal, give up on an outage."""
    if _unreachable(exc):
        lost.append(exc)
    else:
        again.append(record)
