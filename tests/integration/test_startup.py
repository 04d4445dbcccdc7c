"""Topic set-up, and clear errors when a dependency is missing."""

from __future__ import annotations

import subprocess

from kafka import KafkaAdminClient
from kafka.admin import ConfigResource, ConfigResourceType

from app.io.kafka_admin import ensure_topics
from app.settings import Settings
from tests.integration.conftest import TACT, settings_env


def test_ensure_topics_creates_with_limits_and_is_idempotent(stack: Settings) -> None:
    assert ensure_topics(stack) == []  # the fixture already created them
    admin = KafkaAdminClient(bootstrap_servers=stack.kafka_bootstrap)
    described = {
        t["name"]: len(t["partitions"])
        for t in admin.describe_topics(
            [
                stack.topic_clickstream,
                stack.topic_orders,
                stack.topic_actions,
                stack.topic_dead_letters,
            ]
        )
    }
    assert set(described.values()) == {3}
    configs = admin.describe_configs(
        [
            ConfigResource(ConfigResourceType.TOPIC, stack.topic_clickstream),
            ConfigResource(ConfigResourceType.TOPIC, stack.topic_dead_letters),
        ]
    )
    limits = {name: int(c["max.message.bytes"]["value"]) for name, c in configs["topic"].items()}
    insync = {int(c["min.insync.replicas"]["value"]) for c in configs["topic"].values()}
    assert insync == {1}  # set on the topics (describe_configs lists only what was set)
    # Inputs accept oversized events (so they become dead letters, not producer errors);
    # dead letters hold any input plus headers.
    assert limits == {
        stack.topic_clickstream: 8 * 1024 * 1024,
        stack.topic_dead_letters: 9 * 1024 * 1024,
    }
    admin.close()


def test_worker_without_redis_says_so(stack: Settings) -> None:
    env = settings_env(stack)
    env["TACT_REDIS_URL"] = "redis://127.0.0.1:1/0"
    out = subprocess.run([str(TACT), "worker"], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    assert "Redis does not answer" in out.stderr and "make up" in out.stderr


def test_topics_without_kafka_says_so(stack: Settings) -> None:
    env = settings_env(stack)
    env["TACT_KAFKA_BOOTSTRAP"] = "127.0.0.1:1"
    env["TACT_KAFKA_CONNECT_TIMEOUT_S"] = "2"  # it gives up after 2 s instead of 10
    out = subprocess.run(
        [str(TACT), "topics", "create"], env=env, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 2
    assert "no Kafka broker answers at 127.0.0.1:1" in out.stderr


def test_more_replicas_than_brokers_is_refused_before_any_topic_is_made(stack: Settings) -> None:
    env = settings_env(stack)
    env["TACT_TOPIC_CLICKSTREAM"] = stack.topic_clickstream + "-r3"
    env["TACT_TOPIC_REPLICATION"] = "3"
    out = subprocess.run(
        [str(TACT), "topics", "create"], env=env, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 2, out.stderr
    assert "TACT_TOPIC_REPLICATION=3 but the cluster at" in out.stderr
    assert "has 1 broker(s): set it to at most 1" in out.stderr
    admin = KafkaAdminClient(bootstrap_servers=stack.kafka_bootstrap)
    assert stack.topic_clickstream + "-r3" not in admin.list_topics()
    admin.close()


def test_a_worker_refuses_input_topics_that_are_not_co_partitioned(stack: Settings) -> None:
    """clickstream with 3 partitions and orders with 2: one customer's clicks and orders
    would be owned by two workers. The worker does not start, and says how to fix it."""
    from kafka.admin import NewTopic

    orders = f"{stack.topic_orders}-two"
    admin = KafkaAdminClient(bootstrap_servers=stack.kafka_bootstrap)
    admin.create_topics([NewTopic(orders, 2, 1)])
    admin.close()
    env = settings_env(stack)
    env["TACT_TOPIC_ORDERS"] = orders
    env["TACT_CREATE_TOPICS"] = "false"
    out = subprocess.run([str(TACT), "worker"], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 2, out.stderr[-2000:]
    assert "not co-partitioned" in out.stderr and "--partitions 3" in out.stderr
    assert "Traceback" not in out.stderr


def test_topics_read_prints_a_topics_records_in_record_time_order(stack: Settings) -> None:
    """`tact topics read actions`: what a connector author or ops would look at first."""
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=stack.kafka_bootstrap)
    values = [f'{{"n": {i}}}'.encode() for i in range(5)]
    for i, value in enumerate(values):  # over the partitions, in time order
        producer.send(stack.topic_actions, value=value, partition=i % 3, timestamp_ms=1000 + i)
    producer.flush()
    producer.close()

    def read(*options: str) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            [str(TACT), "topics", "read", *options],
            env=settings_env(stack),
            capture_output=True,
            timeout=60,
        )

    out = read("actions")
    assert out.returncode == 0 and out.stdout.splitlines() == values
    assert f"{stack.topic_actions}: 5 records".encode() in out.stderr
    assert read("actions", "--last", "2").stdout.splitlines() == values[-2:]
    missing = read("no-such-topic")
    assert missing.returncode == 2
    assert b"topic 'no-such-topic' does not exist" in missing.stderr
    assert b"Traceback" not in missing.stderr
