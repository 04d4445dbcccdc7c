"""`tact lag` against the real broker: its numbers are Kafka's own consumer-groups tool's."""

from __future__ import annotations

import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

from kafka import KafkaConsumer, KafkaProducer
from kafka.admin import KafkaAdminClient, NewTopic

from app import codec
from app.settings import Settings
from tests.integration.conftest import ROOT, TACT, settings_env

BROKER_SH = ROOT / "deploy" / "kafka" / "broker.sh"
GROUP_TOOL = "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand"


def kafka_tool(settings: Settings, group: str) -> dict[tuple[str, int], dict[str, str]]:
    """`kafka-consumer-groups.sh --describe --group G`, run from the fetched Kafka jars."""
    out = subprocess.run(
        [str(BROKER_SH), "tool", GROUP_TOOL, "--bootstrap-server", settings.kafka_bootstrap,
         "--describe", "--group", group],
        capture_output=True, text=True, timeout=120, check=True,
        env={**settings_env(settings), "TACT_KAFKA_BOOTSTRAP": settings.kafka_bootstrap},
    ).stdout  # fmt: skip
    rows = {}
    for line in out.splitlines():
        cells = line.split()
        if len(cells) >= 6 and cells[0] == group:
            rows[(cells[1], int(cells[2]))] = {
                "committed": cells[3],
                "end": cells[4],
                "lag": cells[5],
                "consumer": cells[6],
            }
    assert rows, out
    return rows


def tact_lag(settings: Settings, group: str, *extra: str) -> tuple[int, dict[str, Any]]:
    done = subprocess.run(
        [str(TACT), "lag", "--group", group, "--json", *extra],
        capture_output=True, text=True, timeout=120, env=settings_env(settings),
    )  # fmt: skip
    return done.returncode, codec.loads(done.stdout)


def test_lag_matches_kafkas_consumer_groups_tool(base_settings: Settings, tmp_path: Path) -> None:
    tag = uuid.uuid4().hex[:8]
    topic, group = f"lag-{tag}", f"lag-group-{tag}"
    leader = f"{group}-__assignor-__leader"  # Faust's, in every worker's group: not shown
    servers = base_settings.kafka_bootstrap.split(",")
    admin = KafkaAdminClient(bootstrap_servers=servers)
    admin.create_topics([NewTopic(topic, 3, 1), NewTopic(leader, 1, 1)])
    admin.close()
    producer = KafkaProducer(bootstrap_servers=servers)
    produced_at = time.time()
    for i in range(300):
        producer.send(topic, key=f"k{i % 11}".encode(), value=b"v")
    producer.flush()
    time.sleep(1.0)
    # A member that reads part of the topic, commits, and stays in the group.
    consumer = KafkaConsumer(
        topic,
        leader,
        bootstrap_servers=servers,
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        max_poll_records=25,
    )
    read = 0
    while read < 120:
        read += sum(len(r) for r in consumer.poll(timeout_ms=1000).values())
    consumer.commit()
    try:
        theirs = kafka_tool(base_settings, group)
        code, ours = tact_lag(base_settings, group)
        assert code == 0
        mine = {(r["topic"], r["partition"]): r for r in ours["partitions"]}
        assert (leader, 0) in theirs
        assert set(mine) == set(theirs) - {(leader, 0)} == {(topic, p) for p in range(3)}
        for key, row in mine.items():
            their = theirs[key]
            assert (
                str(row["committed"] if row["committed"] is not None else "-") == their["committed"]
            )
            assert str(row["end"]) == their["end"]
            assert str(row["lag"] if row["lag"] is not None else "-") == their["lag"]
            assert row["consumer"] == their["consumer"]
        lagging = [r for r in ours["partitions"] if r["lag"]]
        assert sum(r["lag"] for r in ours["partitions"]) == 300 - sum(
            r["committed"] or 0 for r in ours["partitions"]
        )
        assert lagging and all(
            time.time() - produced_at + 1 >= r["time_lag_s"] >= 0.5 for r in lagging
        )
        # For scripts: over a threshold, the exit status says so.
        assert tact_lag(base_settings, group, "--max-lag", "1")[0] == 1
        assert tact_lag(base_settings, group, "--max-lag", "1000")[0] == 0
        assert tact_lag(base_settings, group, "--max-time-lag", "0.1")[0] == 1
    finally:
        consumer.close()
    missing = subprocess.run(
        [str(TACT), "lag", "--group", f"nobody-{tag}"],
        capture_output=True, text=True, timeout=60, env=settings_env(base_settings),
    )  # fmt: skip
    assert missing.returncode == 2 and "no consumer group" in missing.stderr
