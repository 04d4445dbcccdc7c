"""Integration fixtures: the real broker and Redis (started by `make up` / `make test`),
a fresh set of topics and a fresh consumer group per test, and `tact worker` processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from app.cli import demo
from app.io.kafka_admin import admin_client, ensure_topics
from app.settings import Settings

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
TACT = Path(sys.executable).with_name("tact")  # the installed console command


@pytest.fixture(scope="session")
def base_settings() -> Settings:
    """Kafka and Redis must be there: a missing service fails the run, it never skips."""
    settings = Settings()
    try:
        admin_client(settings, timeout_s=10).close()
    except Exception as exc:
        pytest.fail(f"no Kafka broker at {settings.kafka_bootstrap}: {exc}; run `make up`")
    try:
        redis.Redis.from_url(settings.redis_url.get_secret_value()).ping()
    except Exception as exc:
        pytest.fail(f"no Redis at {settings.redis_url}: {exc}; run `make up`")
    return settings


CLUSTER_PORTS = "7101 7102 7103"


@pytest.fixture(scope="session")
def redis_cluster_url() -> Iterator[str]:
    """A local three-node Redis Cluster (deploy/redis-cluster.sh), started for the tests that
    ask for it and reset at the end of the session."""
    script = ROOT / "deploy" / "redis-cluster.sh"
    env = os.environ | {"TACT_REDIS_CLUSTER_PORTS": CLUSTER_PORTS}
    started = subprocess.run(
        ["bash", str(script), "start"], env=env, capture_output=True, text=True, timeout=120
    )
    if started.returncode != 0:
        pytest.fail(f"the Redis Cluster did not start: {started.stderr[-2000:]}")
    try:
        yield f"redis://127.0.0.1:{CLUSTER_PORTS.split()[0]}"
    finally:
        subprocess.run(["bash", str(script), "reset"], env=env, capture_output=True, timeout=120)


def free_port() -> int:
    return demo.free_port("127.0.0.1", 0)


def own(app_prefix: str) -> dict[str, Any]:
    """Settings fields giving a test its own consumer group, topics and metrics port."""
    tag = uuid.uuid4().hex[:10]
    names = ("clickstream", "orders", "actions", "outcomes", "dead_letters")
    return {
        "app_id": f"{app_prefix}-{tag}",
        **{f"topic_{n}": f"{n.replace('_', '-')}-{tag}" for n in names},
        "topic_connector_dead_letters": f"connector-dead-letters-{tag}",
        "session_timeout_s": 6.0,
        "metrics_port": free_port(),
    }


@pytest.fixture
def stack(base_settings: Settings) -> Settings:
    """Settings with this test's own topics and consumer group; topics created."""
    settings = base_settings.model_copy(update=own("tact-test") | {"topic_partitions": 3})
    ensure_topics(settings)
    return settings


def settings_env(settings: Settings) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TACT_")}
    for name, value in settings:
        if value is not None:
            raw = value.get_secret_value() if hasattr(value, "get_secret_value") else value
            env[f"TACT_{name.upper()}"] = str(raw).lower() if isinstance(raw, bool) else str(raw)
    env["TACT_LOG_FORMAT"] = "json"
    return env


class WorkerProcess:
    """A `tact worker` (or another long-running `tact` command) subprocess whose output goes
    to a log file."""

    def __init__(self, settings: Settings, log_path: Path, command: str = "worker") -> None:
        self.settings = settings
        self.log_path = log_path
        self._log = log_path.open("ab")
        self.proc = subprocess.Popen(
            [str(TACT), command],
            cwd=ROOT,
            env=settings_env(settings),
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def metrics(self) -> dict[str, float]:
        """The worker's Prometheus samples, as {'name{labels}': value}."""
        import urllib.request

        url = f"http://127.0.0.1:{self.settings.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:
            text = response.read().decode()
        samples = {}
        for line in text.splitlines():
            if line.startswith("tact_"):
                name, value = line.rsplit(" ", 1)
                samples[name] = float(value)
        return samples

    def wait_metrics(self, timeout: float = 30) -> dict[str, float]:
        deadline = time.monotonic() + timeout
        while True:
            try:
                return self.metrics()
            except OSError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise
                time.sleep(0.3)

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        self.proc.wait(timeout=60)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def close(self) -> bool:
        """SIGTERM; False if the worker was still there 30 s later (its stop deadline is
        15 s) and had to be killed."""
        stopped = True
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                stopped = False
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return stopped


@pytest.fixture
def frozen_policy(tmp_path: Path) -> Path:
    """The default policy with learning off: decisions then depend only on each customer's
    own events, so a restarted worker must reproduce them exactly."""
    from importlib import resources

    import yaml

    text = resources.files("app.policies").joinpath("default.yaml").read_text("utf-8")
    policy = yaml.safe_load(text)
    policy["learning"]["enabled"] = False
    path = tmp_path / "frozen-policy.yaml"
    path.write_text(yaml.safe_dump(policy))
    return path


@pytest.fixture
def start_worker(tmp_path: Path) -> Iterator[Any]:
    """start_worker(settings[, command]) -> WorkerProcess (`tact worker`, or `tact learner`);
    every one is stopped at teardown."""
    workers: list[WorkerProcess] = []

    def start(settings: Settings, command: str = "worker") -> WorkerProcess:
        worker = WorkerProcess(settings, tmp_path / f"{command}-{len(workers)}.log", command)
        workers.append(worker)
        return worker

    yield start
    hung = []
    for worker in workers:  # every one, before a hung one fails the test
        if not worker.close():
            hung.append(worker.log_path.name)
        sys.stderr.write(f"--- {worker.log_path.name} (last lines)\n")
        sys.stderr.write("\n".join(worker.log().splitlines()[-15:]) + "\n")
    assert not hung, f"workers still running 30 s after SIGTERM: {', '.join(hung)}"
