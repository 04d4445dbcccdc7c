"""Redis going away mid-stream stalls the worker; when it is back, nothing is lost or changed."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from app import codec
from app.sample import generate
from app.settings import Settings
from tests.integration.conftest import free_port
from tests.integration.kafka_helpers import TopicReader, produce_events, producer
from tests.integration.test_worker import clickstream_only, expected_actions, topics_of


class PrivateRedis:
    """A redis-server of this test's own, persisted to disk so it can be stopped and restarted."""

    def __init__(self, directory: Path) -> None:
        self.port = free_port()
        self.dir = directory
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server")
        assert binary, "redis-server is not installed (make test installs it)"
        subprocess.run(
            [
                binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--daemonize",
                "yes",
                "--dir",
                str(self.dir),
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--save",
                "",
                "--pidfile",
                str(self.dir / "redis.pid"),
            ],
            check=True,
        )
        client = redis.Redis.from_url(self.url)
        for _ in range(100):
            try:
                client.ping()
                return
            except redis.ConnectionError:
                time.sleep(0.05)
        raise AssertionError("private redis-server did not start")

    def stop(self) -> None:
        with contextlib.suppress(redis.ConnectionError):  # shutdown drops the connection
            redis.Redis.from_url(self.url).shutdown()


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    server = PrivateRedis(tmp_path)
    server.start()
    yield server
    server.stop()


def test_redis_outage_stalls_then_recovers(
    stack: Settings, start_worker: Any, private_redis: PrivateRedis, frozen_policy: Any
) -> None:
    # Learning off and one topic: each customer's actions depend only on its own events.
    settings = stack.model_copy(
        update={"redis_url": private_redis.url, "batch_max": 50, "policy": frozen_policy}
    )
    events = clickstream_only(list(generate(120, seed=5)))
    half = len(events) // 2
    want = {a for acts in expected_actions(events, frozen_policy).values() for a in acts}
    want_first = {
        a for acts in expected_actions(events[:half], frozen_policy).values() for a in acts
    }

    prod = producer(settings.kafka_bootstrap)
    worker = start_worker(settings)
    produce_events(prod, topics_of(settings), events[:half])
    actions = TopicReader(settings.kafka_bootstrap, settings.topic_actions)
    actions.wait_for(lambda r: {x.value for x in r} >= want_first, what="first half's actions")

    private_redis.stop()
    produce_events(prod, topics_of(settings), events[half:])
    # the worker retries with backoff meanwhile: "Redis unavailable" once it next reaches
    # Redis (a connection lost inside a commit was once taken for a fence instead:
    # tests/integration/test_redis_store.py)
    deadline = time.monotonic() + 30
    while "Redis unavailable" not in worker.log() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert worker.proc.poll() is None, "the worker died instead of waiting for Redis"
    assert "Redis unavailable" in worker.log()
    private_redis.start()

    actions.wait_for(
        lambda r: {x.value for x in r} >= want,
        timeout=120,
        what="every action after Redis came back",
    )
    copies: dict[str, set[bytes]] = defaultdict(set)
    for r in actions.settle():
        copies[codec.loads(r.value)["action_id"]].add(r.value)
    assert {v for vs in copies.values() for v in vs} == want
    assert all(len(v) == 1 for v in copies.values())
