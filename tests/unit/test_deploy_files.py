"""docker-compose.yml, the broker script and the settings agree with each other."""

from __future__ import annotations

from pathlib import Path

import yaml

from app.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


def compose() -> dict:  # type: ignore[type-arg]
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_compose_runs_the_pinned_kafka_version() -> None:
    version = (ROOT / "deploy" / "kafka" / "VERSION").read_text().strip()
    assert compose()["services"]["kafka"]["image"] == f"apache/kafka:{version}"


def test_compose_has_kafka_redis_and_the_worker() -> None:
    services = compose()["services"]
    assert {"kafka", "redis", "worker"} <= set(services)
    assert services["worker"]["depends_on"]["kafka"]["condition"] == "service_healthy"


def test_compose_worker_sets_only_real_settings() -> None:
    env = compose()["services"]["worker"]["environment"]
    known = {f"TACT_{name.upper()}" for name in Settings.model_fields}
    assert set(env) <= known, set(env) - known


def test_broker_pom_takes_the_version_from_the_script() -> None:
    pom = (ROOT / "deploy" / "kafka" / "pom.xml").read_text()
    assert "<version>${kafka.version}</version>" in pom
    assert "-Dkafka.version=" in (ROOT / "deploy" / "kafka" / "broker.sh").read_text()


def test_readme_documents_every_setting() -> None:
    readme = (ROOT / "README.md").read_text()
    missing = [
        f"TACT_{n.upper()}" for n in Settings.model_fields if f"`TACT_{n.upper()}`" not in readme
    ]
    assert missing == []
