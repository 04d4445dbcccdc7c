"""Topic set-up with kafka-python's admin client: create what is missing, check what exists."""

from __future__ import annotations

import logging

from kafka import KafkaAdminClient
from kafka.admin import NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError

from app.errors import DependencyUnavailable
from app.settings import Settings

log = logging.getLogger(__name__)

MIB = 1024 * 1024


def topic_specs(settings: Settings) -> dict[str, dict[str, str]]:
    """Every topic the worker uses, with the configs tact sets when it creates them.

    Inputs accept records a few times larger than the event limit, so an oversized event
    reaches tact and becomes a dead letter with a reason instead of a producer error that
    nobody reads. Dead letters keep the original bytes, so their limit is higher still.
    """
    input_limit = str(max(4 * settings.max_event_bytes, 8 * MIB))
    return {
        settings.topic_clickstream: {"max.message.bytes": input_limit},
        settings.topic_orders: {"max.message.bytes": input_limit},
        settings.topic_actions: {},
        settings.topic_outcomes: {},
        settings.topic_dead_letters: {
            "max.message.bytes": str(int(input_limit) + MIB),
            "retention.ms": str(30 * 24 * 3600 * 1000),
        },
        settings.topic_connector_dead_letters: {"retention.ms": str(30 * 24 * 3600 * 1000)},
    }


def admin_client(settings: Settings, timeout_s: float = 10.0) -> KafkaAdminClient:
    """An admin client, or DependencyUnavailable with a hint when Kafka is not there."""
    try:
        return KafkaAdminClient(
            bootstrap_servers=settings.kafka_bootstrap.split(","),
            client_id=f"{settings.app_id}-admin",
            request_timeout_ms=int(timeout_s * 1000),
            bootstrap_timeout_ms=int(timeout_s * 1000),
        )
    except KafkaError as exc:
        raise DependencyUnavailable(
            f"no Kafka broker answers at {settings.kafka_bootstrap} "
            "(start one with `make up`, or set TACT_KAFKA_BOOTSTRAP)"
        ) from exc


def ensure_topics(settings: Settings) -> list[str]:
    """Create the missing topics; return the names created."""
    specs = topic_specs(settings)
    admin = admin_client(settings)
    try:
        existing = set(admin.list_topics())
        missing = [
            NewTopic(
                name, settings.topic_partitions, settings.topic_replication, topic_configs=config
            )
            for name, config in specs.items()
            if name not in existing
        ]
        created: list[str] = []
        for topic in missing:
            try:
                admin.create_topics([topic])
                created.append(topic.name)
            except TopicAlreadyExistsError:
                pass  # another worker created it meanwhile
        if created:
            log.info(
                "created topics %s",
                ", ".join(created),
                extra={"partitions": settings.topic_partitions},
            )
        _check_copartitioned(admin, settings)
        return created
    except KafkaError as exc:
        raise DependencyUnavailable(f"Kafka topic set-up failed: {exc!r}") from exc
    finally:
        admin.close()


def _check_copartitioned(admin: KafkaAdminClient, settings: Settings) -> None:
    """Warn when the two inputs differ in partitions: a customer's events would then be
    owned by different workers once more than one runs."""
    described = admin.describe_topics([settings.topic_clickstream, settings.topic_orders])
    counts = {t["name"]: len(t["partitions"]) for t in described}
    if len(set(counts.values())) > 1:
        log.warning(
            "input topics are not co-partitioned: %s; run a single worker or "
            "give them the same partition count",
            counts,
        )
