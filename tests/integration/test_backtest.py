"""Backtests from the topics, against the real broker: `tact ingest` loads a public dataset
into the input topics, and `tact replay --from-topics` replays a time range of them exactly as
a file replay of the same events would."""

from __future__ import annotations

import subprocess
from collections import defaultdict
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from app import codec
from app.settings import Settings
from tests.integration.conftest import ROOT, TACT, settings_env
from tests.integration.kafka_helpers import TopicReader

REES46 = ROOT.parent / "shared" / "datasets" / "rees46_2019oct_head" / "2019-Oct_head.csv.gz"


def tact(settings: Settings, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [str(TACT), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=settings_env(settings),
    )
    assert done.returncode == 0, done.stderr
    return done


def by_customer(path: Path) -> dict[str, list[bytes]]:
    out: dict[str, list[bytes]] = defaultdict(list)
    for line in path.read_bytes().splitlines():
        out[codec.loads(line)["customer_id"]].append(line)
    return dict(out)


def test_ingest_then_replay_from_topics(
    stack: Settings, tmp_path: Path, frozen_policy: Any
) -> None:
    if not REES46.is_file():
        pytest.fail(f"the REES46 sample is not at {REES46} (../shared/datasets)")
    # The dataset as a file, and produced into this test's topics.
    events, catalog = tmp_path / "rees46.jsonl", tmp_path / "catalog.jsonl"
    tact(
        stack,
        "datasets",
        "rees46",
        "--source",
        str(REES46),
        "--events",
        str(events),
        "--catalog",
        str(catalog),
    )
    ingest = tact(stack, "ingest", "rees46", "--source", str(REES46))
    assert "produced 17,434 events" in ingest.stderr
    # Wait for the known counts (a quiet spell is no proof the topic has been read).
    clicks = TopicReader(stack.kafka_bootstrap, stack.topic_clickstream).wait_for(
        lambda r: len(r) >= 17_434 - 214, what="the clickstream"
    )
    orders = TopicReader(stack.kafka_bootstrap, stack.topic_orders).wait_for(
        lambda r: len(r) >= 214, what="the orders"
    )
    assert len(clicks) + len(orders) == 17_434 and len(orders) == 214
    first = datetime.fromisoformat(codec.loads(clicks[0].value)["ts"].replace("Z", "+00:00"))
    assert clicks[0].timestamp == int(first.timestamp() * 1000)  # record time = event time

    # The whole range from the topics decides as the file does (learning off: per customer).
    from_file, from_topics = tmp_path / "file-actions.jsonl", tmp_path / "topic-actions.jsonl"
    policy = ["--catalog", str(catalog), "--policy", str(frozen_policy)]
    tact(stack, "replay", str(events), *policy, "--out", str(from_file))
    report = tmp_path / "report"
    backtest = tact(
        stack,
        "replay",
        "--from-topics",
        *policy,
        "--out",
        str(from_topics),
        "--report",
        str(report),
    )
    assert by_customer(from_topics) == by_customer(from_file)
    assert "17,434 events" in backtest.stderr and "dead letters   0" in backtest.stderr
    assert (report / "report.html").is_file()
    assert "incremental profit per customer" in backtest.stdout

    # A range: only its events are read.
    part = tmp_path / "part.jsonl"
    ranged = tact(
        stack, "replay", "--from-topics", *policy, "--out", str(part),
        "--since", "2019-10-01T01:00:00Z", "--until", "2019-10-01T01:59:59Z",
    )  # fmt: skip
    inside = [
        e
        for e in (codec.loads(x) for x in events.read_bytes().splitlines())
        if "2019-10-01T01:" in e["ts"]
    ]
    assert f"{len(inside):,} events" in ranged.stderr
