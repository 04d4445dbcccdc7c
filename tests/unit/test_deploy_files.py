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


def _worker_metric_names() -> set[str]:
    """Every series name the worker exports (counters as _total, histograms as _bucket...)."""
    from prometheus_client import REGISTRY

    import app.io.metrics as worker_metrics

    del worker_metrics  # imported for its registrations
    names = set()
    for family in REGISTRY.collect():
        names.add(family.name)
        for suffix in ("_total", "_bucket", "_sum", "_count"):
            names.add(family.name + suffix)
    return names


def test_the_dashboard_uses_only_metrics_the_worker_exports() -> None:
    import json
    import re

    dashboard = json.loads((ROOT / "deploy" / "grafana" / "tact-dashboard.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    used = {m for e in exprs for m in re.findall(r"\btact_[a-z_]+", e)}
    assert len(used) >= 10
    assert used <= _worker_metric_names(), used - _worker_metric_names()
    assert {"tact_consumer_lag_records", "tact_decision_seconds_bucket"} <= used


def test_prometheus_scrapes_the_metrics_port() -> None:
    config = yaml.safe_load((ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text())
    (job,) = config["scrape_configs"]
    assert job["metrics_path"] == "/metrics"
    port = Settings.model_fields["metrics_port"].default
    assert any(t.endswith(f":{port}") for t in job["static_configs"][0]["targets"])


def test_the_readme_contents_list_every_section_and_every_link_lands() -> None:
    import re

    text = (ROOT / "README.md").read_text()
    heads = re.findall(r"^## (.+)$", text, flags=re.M)
    titles = re.findall(r"^###? (.+)$", text, flags=re.M)  # links may land on subsections
    anchors = {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in titles}
    contents = re.findall(r"^- \[(.+?)\]\(#(.+?)\)$", text, flags=re.M)
    assert [title for title, _ in contents] == heads
    links = set(re.findall(r"\]\(#([\w-]+)\)", text))
    assert links - anchors == set()
