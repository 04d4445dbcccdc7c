"""Producing events into `clickstream` and `orders`: keyed by customer, each record's Kafka
timestamp set to the event's time, so a time range of the topics (`tact replay --from-topics`,
`tact report --from-topics`) is a range of event time."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

from kafka import KafkaProducer
from kafka.errors import KafkaError

from app import codec
from app.errors import DependencyUnavailable
from app.settings import Settings
from schemas import FAMILY_OF_TYPE
from schemas.types import event_seconds


def produce(
    settings: Settings,
    events: Iterable[dict[str, Any]],
    rate: float | None = None,
    progress: Callable[[int], None] | None = None,
) -> Counter[str]:
    """Send every event to its family's topic; returns the counts per topic. `rate` caps
    events per second (None: as fast as the broker takes them)."""
    topics = {"clickstream": settings.topic_clickstream, "orders": settings.topic_orders}
    try:
        producer = KafkaProducer(
            bootstrap_servers=settings.kafka_bootstrap.split(","),
            acks="all",
            linger_ms=20,
            max_request_size=8 * 1024 * 1024,
        )
    except KafkaError as exc:
        raise DependencyUnavailable(
            f"no Kafka broker answers at {settings.kafka_bootstrap}: {exc}"
        ) from exc
    sent: Counter[str] = Counter()
    started = time.monotonic()
    try:
        for n, event in enumerate(events, start=1):
            topic = topics[FAMILY_OF_TYPE[event["type"]]]
            producer.send(
                topic,
                key=str(event["customer_id"]).encode("utf-8"),
                value=codec.dumps(event),
                timestamp_ms=int(event_seconds(event["ts"]) * 1000),
            )
            sent[topic] += 1
            if rate:
                ahead = n / rate - (time.monotonic() - started)
                if ahead > 0:
                    time.sleep(ahead)
            if progress is not None and n % 5000 == 0:
                progress(n)
        producer.flush()
    except KafkaError as exc:
        raise DependencyUnavailable(f"producing to Kafka failed: {exc!r}") from exc
    finally:
        producer.close()
    return sent
