"""The stack's scripts never signal a process their pid file names unless it is theirs: after
a crash or a reboot the number may belong to another process (deploy/redis.sh,
deploy/redis-cluster.sh, deploy/kafka/broker.sh: `make down`)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def stranger() -> Iterator[subprocess.Popen[bytes]]:
    """Someone else's process, its number left in a stale pid file."""
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield process
    process.kill()
    process.wait()


@pytest.mark.parametrize(
    ("script", "folder", "pidfile", "env"),
    [
        (
            "deploy/redis.sh",
            "redis-{port}",
            "redis.pid",
            "TACT_REDIS_URL=redis://127.0.0.1:{port}/0",
        ),
        (
            "deploy/redis-cluster.sh",
            "redis-cluster-{port}",
            "redis.pid",
            "TACT_REDIS_CLUSTER_PORTS={port}",
        ),
        (
            "deploy/kafka/broker.sh",
            "kafka-{port}",
            "kafka.pid",
            "TACT_KAFKA_BOOTSTRAP=127.0.0.1:{port}",
        ),
    ],
)
def test_a_stale_pid_file_is_dropped_and_its_process_left_alone(
    tmp_path: Path,
    stranger: subprocess.Popen[bytes],
    script: str,
    folder: str,
    pidfile: str,
    env: str,
) -> None:
    port = free_port()
    run = tmp_path / folder.format(port=port)
    run.mkdir()
    (run / pidfile).write_text(f"{stranger.pid}\n")
    name, _, value = env.format(port=port).partition("=")
    done = subprocess.run(
        ["bash", str(ROOT / script), "stop"],
        env={**os.environ, "TACT_RUN_DIR": str(tmp_path), name: value},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert stranger.poll() is None  # still running: not signalled
    assert not (run / pidfile).exists()
