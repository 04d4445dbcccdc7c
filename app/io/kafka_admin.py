"""Topic set-up with kafka-python's admin client: create what is missing, check what exists."""

from __future__ import annotations

import logging
import time

from kafka import KafkaAdminClient
from kafka.admin import NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError

from app.errors import ConfigurationError, DependencyUnavailable
from app.io import clients
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
    """An admin client whose requests time out after `timeout_s`, or DependencyUnavailable
    saying why when Kafka cannot be used (within TACT_KAFKA_CONNECT_TIMEOUT_S)."""
    return clients.admin(
        settings, client_id=f"{settings.app_id}-admin", request_timeout_ms=int(timeout_s * 1000)
    )


def ensure_topics(settings: Settings) -> list[str]:
    """Create the missing topics, replicated TACT_TOPIC_REPLICATION times with
    min.insync.replicas from the settings; return the names created."""
    specs = topic_specs(settings)
    admin = admin_client(settings)
    try:
        existing = set(admin.list_topics())
        insync = {"min.insync.replicas": str(settings.min_insync_replicas)}
        missing = [
            NewTopic(
                name,
                settings.topic_partitions,
                settings.topic_replication,
                topic_configs=config | insync,
            )
            for name, config in specs.items()
            if name not in existing
        ]
        if missing:
            _check_replication(settings, len(admin.describe_cluster().get("brokers") or ()))
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
            _partitions(admin, created)  # wait until the new topics' metadata is there
        return created
    except KafkaError as exc:
        if "Authorization" in type(exc).__name__:
            raise DependencyUnavailable(
                f"Kafka refused tact's topic set-up ({type(exc).__name__}): the user needs "
                "Describe and Create on the topics (README: Connecting to a secured Kafka and "
                "Redis), or create them yourself and set TACT_CREATE_TOPICS=false"
            ) from exc
        if "Policy" in type(exc).__name__:
            raise DependencyUnavailable(
                f"Kafka refused the topics tact would create ({exc}): a managed cluster may "
                "require TACT_TOPIC_REPLICATION=3 (Confluent Cloud does), or create them "
                "yourself and set TACT_CREATE_TOPICS=false"
            ) from exc
        raise DependencyUnavailable(f"Kafka topic set-up failed: {exc!r}") from exc
    finally:
        admin.close()


def _check_replication(settings: Settings, brokers: int) -> None:
    """Refuse a replication factor the cluster cannot hold; warn when a cluster that could
    keep copies gets topics with one (a broker lost is then data lost)."""
    replication = settings.topic_replication
    if brokers and replication > brokers:
        raise ConfigurationError(
            f"TACT_TOPIC_REPLICATION={replication} but the cluster at {settings.kafka_bootstrap} "
            f"has {brokers} broker(s): set it to at most {brokers}"
        )
    if replication == 1 and brokers > 1:
        log.warning(
            "CREATING TOPICS WITH ONE REPLICA on a cluster of %d brokers: a broker lost loses "
            "their data; set TACT_TOPIC_REPLICATION=3 (and TACT_TOPIC_MIN_INSYNC_REPLICAS=2)",
            brokers,
        )


def _partitions(admin: KafkaAdminClient, topics: list[str]) -> dict[str, int]:
    """Partition counts of `topics` that exist, asking again for a few seconds while some
    have none yet (the metadata of a topic just created lags a little)."""
    counts: dict[str, int] = {}
    for attempt in range(6):
        counts = {
            t.get("name") or t.get("topic"): len(t["partitions"])
            for t in admin.describe_topics(topics)
            if t.get("partitions")
        }
        if len(counts) == len(topics):
            break
        time.sleep(0.25 * (attempt + 1))
    return counts


def input_partitions(settings: Settings) -> dict[str, int]:
    """The partition count of each input topic; ConfigurationError when they differ (a
    customer's clicks and orders would then be owned by different workers)."""
    inputs = [settings.topic_clickstream, settings.topic_orders]
    admin = admin_client(settings)
    try:
        counts = _partitions(admin, inputs)
    except KafkaError as exc:
        raise DependencyUnavailable(f"Kafka topic description failed: {exc!r}") from exc
    finally:
        admin.close()
    missing = [name for name in inputs if name not in counts]
    if missing:
        raise ConfigurationError(
            f"input topic(s) {', '.join(missing)} do not exist: create them, or let the worker "
            "create them (TACT_CREATE_TOPICS=true)"
        )
    if len(set(counts.values())) > 1:
        most = max(counts.values())
        raise ConfigurationError(
            "the input topics are not co-partitioned: "
            + ", ".join(f"{name} has {n} partitions" for name, n in counts.items())
            + "; a customer's clicks and orders would be owned by different workers. Give "
            f"them the same count, e.g. kafka-topics.sh --alter --topic <topic> --partitions "
            f"{most} (keys then move: do it before events arrive, or replay)"
        )
    return counts
