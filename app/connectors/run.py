"""`tact connector run NAME`: the SDK's runner on Kafka and Redis, until stopped."""

from __future__ import annotations

import logging
import signal
import threading
from typing import Any

import redis
from kafka import KafkaConsumer, KafkaProducer
from kafka.errors import KafkaError

from app import codec
from app.connectors.sdk import Connector, Runner
from app.errors import DependencyUnavailable
from app.io.kafka_admin import ensure_topics
from app.settings import Settings

log = logging.getLogger(__name__)


def group_of(connector: Connector) -> str:
    return f"tact-connector-{connector.name}"


def run(settings: Settings, connector: Connector, stop: threading.Event | None = None) -> None:
    """Consume `actions` in the connector's own group and deliver until `stop` (or SIGTERM /
    SIGINT)."""
    stop = stop if stop is not None else threading.Event()
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
    ensure_topics(settings)
    servers = settings.kafka_bootstrap.split(",")
    try:
        producer = KafkaProducer(bootstrap_servers=servers, acks="all", linger_ms=5)
        consumer = KafkaConsumer(
            settings.topic_actions,
            bootstrap_servers=servers,
            group_id=group_of(connector),
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=200,
            session_timeout_ms=int(settings.session_timeout_s * 1000),
            heartbeat_interval_ms=int(max(1.0, settings.session_timeout_s / 4) * 1000),
        )
    except KafkaError as exc:
        raise DependencyUnavailable(
            f"no Kafka broker answers at {settings.kafka_bootstrap}"
        ) from exc
    store = redis.Redis.from_url(settings.redis_url.get_secret_value())
    store.ping()

    def dead_letter(key: bytes | None, value: bytes, headers: dict[str, str]) -> None:
        producer.send(
            settings.topic_connector_dead_letters,
            key=key,
            value=value,
            headers=[(f"tact.dlq.{k}", v.encode()) for k, v in headers.items()],
        )

    def receipt(event: dict[str, Any]) -> None:
        producer.send(
            settings.topic_clickstream,
            key=str(event["customer_id"]).encode(),
            value=codec.dumps(event),
        )

    runner = Runner(connector, store, dead_letter, prefix=f"tact:{settings.app_id}")
    log.info("connector %s delivering %s", connector.name, ", ".join(sorted(connector.channels)))
    try:
        while not stop.is_set():
            batch = consumer.poll(timeout_ms=500)
            for tp, records in batch.items():
                for record in records:
                    if record.value is not None:
                        runner.handle(record.key, record.value, tp.partition, record.timestamp)
            producer.flush()  # dead letters are durable before the commit
            if batch:
                consumer.commit()
            # Now that the batch is handled: which partitions are read to their end.
            runner.caught_up = {
                tp.partition
                for tp in consumer.assignment()
                if (end := consumer.highwater(tp)) is not None and consumer.position(tp) >= end
            }
            runner.deliver_due(sorted(tp.partition for tp in consumer.assignment()))
            producer.flush()
            runner.drain_receipts(receipt, producer.flush)
    finally:
        log.info("connector %s stopping: %s", connector.name, runner.stats)
        consumer.close()
        producer.close()
