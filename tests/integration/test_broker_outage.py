"""The broker dies (SIGKILL) mid-stream for 12 s (twice the worker's send timeout) and the
seconds its restart takes, while the worker's sends time out inside batches: the worker
handles the failed batches again from the checkpoint, recovers by itself when the broker is
back, loses no action, changes none, and its log stays readable."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from app import codec
from app.io.kafka_admin import ensure_topics
from app.sample import generate
from app.settings import Settings
from tests.integration.conftest import ROOT, free_port
from tests.integration.kafka_helpers import (
    TopicReader,
    produce_events,
    producer,
    wait_for_actions,
)
from tests.integration.test_worker import clickstream_only, expected_actions, topics_of

BROKER = ROOT / "deploy" / "kafka" / "broker.sh"


class Broker:
    """A broker of this test's own, on its own ports and data directory."""

    def __init__(self, run_dir: Path) -> None:
        port = free_port()
        self.bootstrap = f"127.0.0.1:{port}"
        self.env = {
            **os.environ,
            "TACT_KAFKA_BOOTSTRAP": self.bootstrap,
            "TACT_KAFKA_CONTROLLER_PORT": str(free_port()),
            "TACT_RUN_DIR": str(run_dir),
            "TACT_KAFKA_HEAP": "384m",
        }
        self.pid_file = run_dir / f"kafka-{port}" / "kafka.pid"

    def start(self) -> None:
        subprocess.run([str(BROKER), "start"], env=self.env, check=True, timeout=180)

    def kill(self) -> None:
        os.kill(int(self.pid_file.read_text().strip()), signal.SIGKILL)
        time.sleep(1.0)

    def stop(self) -> None:
        subprocess.run([str(BROKER), "stop"], env=self.env, timeout=120)


@pytest.fixture
def own_broker(tmp_path: Path) -> Any:
    broker = Broker(tmp_path / "run")
    broker.start()
    yield broker
    broker.stop()


def test_a_broker_outage_inside_batches_loses_nothing_and_needs_no_restart(
    stack: Settings, own_broker: Broker, start_worker: Any, frozen_policy: Any
) -> None:
    events = clickstream_only(list(generate(1200, seed=5)))
    expected = expected_actions(events, frozen_policy)
    expected_ids = {codec.loads(a)["action_id"] for acts in expected.values() for a in acts}
    stack = stack.model_copy(
        update={
            "kafka_bootstrap": own_broker.bootstrap,
            "policy": frozen_policy,
            "batch_max": 200,
            "producer_timeout_s": 6.0,  # below the outage: sends fail inside batches
        }
    )
    ensure_topics(stack)
    prod = producer(stack.kafka_bootstrap)
    produce_events(prod, topics_of(stack), events)
    prod.close()

    worker = start_worker(stack)
    actions = TopicReader(stack.kafka_bootstrap, stack.topic_actions)
    actions.wait_for(lambda r: len(r) >= 50, what="the first actions")
    own_broker.kill()
    time.sleep(12.0)  # two send timeouts; the restart adds its own 5-15 s to the outage
    assert worker.proc.poll() is None, "the worker died with the broker"
    own_broker.start()

    actions = TopicReader(stack.kafka_bootstrap, stack.topic_actions)
    wait_for_actions(actions, expected_ids, 240, f"all {len(expected_ids)} actions")
    assert worker.proc.poll() is None, "the worker needed a restart"
    metrics = worker.wait_metrics()
    assert metrics.get("tact_batch_retries_total", 0) >= 1, "no send failed inside a batch"
    lines = worker.log().splitlines()
    assert len(lines) < 500, f"{len(lines)} log lines for a 20 s outage"  # 30 when it works
