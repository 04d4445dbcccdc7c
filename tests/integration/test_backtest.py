"""Backtests from the topics, against the real broker: `tact ingest` loads a public dataset
into the input topics, and `tact replay --from-topics` replays a time range of them exactly as
a file replay of the same events would."""

from __future__ import annotations

import subprocess
import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from app import codec
from app.settings import Settings
from schemas import FAMILY_OF_TYPE
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


def test_produce_sends_a_file_of_events_as_written(stack: Settings, tmp_path: Path) -> None:
    """`tact produce FILE`: each valid line on its type's topic, keyed by customer, stamped
    with the event's time, byte for byte; lines that are not events, and events dated days
    ahead (a Kafka 4 broker refuses them, and every other record of their batch), in a
    dead-letter file with the reason; events already past the policy's freshness limit are
    sent, with a warning."""
    events = tmp_path / "mine.jsonl"
    tact(stack, "sample", "--customers", "30", "--seed", "4", "--events", str(events))
    # Squeezed, in order, into the last 5 days: a partition whose records are stamped more
    # than 7 days back may be deleted by the broker's time retention before the test reads it.
    lines = events.read_bytes().splitlines()
    first, last = min(map(_seconds, lines)), max(map(_seconds, lines))
    end, span = time.time() - 3600, 5 * 86_400

    def recent(x: bytes) -> bytes:
        t = end - span + (_seconds(x) - first) / (last - first) * span
        return codec.dumps({**codec.loads(x), "ts": datetime.fromtimestamp(round(t, 3), UTC)})

    good = [recent(x) for x in lines]
    assert len(good) > 100
    ahead = datetime.fromtimestamp(time.time() + 3 * 86_400, UTC).isoformat()
    future = [
        codec.dumps({**codec.loads(x), "ts": ahead, "event_id": f"f{n}"})
        for n, x in enumerate(good[:5])
    ]
    bad = [b"not json", b'{"type": "teleport", "customer_id": "c1"}', b"[1, 2]"]
    events.write_bytes(b"\n".join(good[:10] + bad + good[10:] + future[:5]) + b"\n\n")
    done = tact(stack, "produce", str(events))
    assert f"produced {len(good):,} events from {events}" in done.stderr
    assert "3 lines were not valid events" in done.stderr and "refused" not in done.stderr
    assert "5 events dated more than 5 minutes ahead of this machine's clock" in done.stderr
    # Dated the last 5 days: the worker would take every one for stale, and the user is told.
    assert f"warning: {len(good):,} of {len(good):,} events were older than" in done.stderr
    letters = [
        codec.loads(x) for x in (tmp_path / "mine.dead-letters.jsonl").read_bytes().splitlines()
    ]
    assert [(x["line"], x["reason"]) for x in letters] == [
        (11, "not_json"),
        (12, "unknown_type"),
        (13, "not_object"),
    ] + [(n, "future_timestamp") for n in range(len(good) + 4, len(good) + 9)]
    orders = sum(FAMILY_OF_TYPE[codec.loads(x)["type"]] == "orders" for x in good)
    got = {}
    for topic in (stack.topic_clickstream, stack.topic_orders):
        want = orders if topic == stack.topic_orders else len(good) - orders
        reader = TopicReader(stack.kafka_bootstrap, topic)
        records = reader.wait_for(lambda r, want=want: len(r) >= want, what=topic)
        assert len(reader.settle()) == want
        got.update({r.value: r for r in records})
    assert set(got) == set(good)  # every valid line, as written
    for line, record in got.items():
        assert record.key == codec.loads(line)["customer_id"].encode()
        assert record.timestamp == int(_seconds(line) * 1000)


def _seconds(line: bytes) -> float:
    return datetime.fromisoformat(codec.loads(line)["ts"]).timestamp()


def test_a_record_the_broker_refuses_takes_no_other_record_with_it(
    stack: Settings, tmp_path: Path
) -> None:
    """Kafka refuses a whole batch for one record dated too far ahead; the others are sent
    again on their own, and the refused one is counted with what it means."""
    from app.io.ingest import produce_records

    now = int(time.time() * 1000)
    records = [("clickstream", f"c{n}".encode(), f"v{n}".encode(), now - n) for n in range(50)]
    records.insert(20, ("clickstream", b"late", b"ahead", now + 3 * 86_400_000))
    done = produce_records(stack, records)
    assert done.sent == {stack.topic_clickstream: 50}
    assert done.refused == {"InvalidTimestampError": 1}
    assert "an hour ahead" in done.refusals()
    reader = TopicReader(stack.kafka_bootstrap, stack.topic_clickstream)
    got = {r.value for r in reader.settle()}
    assert got == {f"v{n}".encode() for n in range(50)}


def test_a_range_of_older_data_produced_after_newer_is_found(
    stack: Settings, tmp_path: Path, frozen_policy: Any
) -> None:
    """A backfill: last year's events produced after this month's. Timestamps then fall along
    each partition, and a range of last year must still hold exactly last year's events,
    deciding as the file of them does."""
    sample, catalog = tmp_path / "sample.jsonl", tmp_path / "catalog.jsonl"
    tact(stack, "sample", "--customers", "40", "--seed", "6", "--events", str(sample),
         "--catalog", str(catalog))  # fmt: skip
    now = time.time()
    recent = [x for x in sample.read_bytes().splitlines() if _seconds(x) < now - 600]
    year = timedelta(days=365)
    old = []
    for line in recent:
        event = codec.loads(line)
        event["ts"] = (datetime.fromisoformat(event["ts"]) - year).isoformat()
        event["customer_id"] = "old-" + event["customer_id"]
        event["event_id"] = "old-" + event["event_id"]
        old.append(codec.dumps(event))
    newer, older = tmp_path / "newer.jsonl", tmp_path / "older.jsonl"
    newer.write_bytes(b"\n".join(recent) + b"\n")
    older.write_bytes(b"\n".join(old) + b"\n")
    tact(stack, "produce", str(newer))
    tact(stack, "produce", str(older))  # after: older timestamps at higher offsets
    since = datetime.fromtimestamp(min(map(_seconds, old)), UTC).isoformat()
    until = datetime.fromtimestamp(max(map(_seconds, old)), UTC).isoformat()
    policy = ["--catalog", str(catalog), "--policy", str(frozen_policy)]
    from_file, from_topics = tmp_path / "file.jsonl", tmp_path / "topics.jsonl"
    tact(stack, "replay", str(older), *policy, "--out", str(from_file))
    ranged = tact(
        stack, "replay", "--from-topics", *policy, "--out", str(from_topics),
        "--since", since, "--until", until,
    )  # fmt: skip
    assert f"replay: {len(old):,} events" in ranged.stderr
    assert "dated outside the range" in ranged.stderr
    assert by_customer(from_topics) == by_customer(from_file)
    # a range the data does not reach says so (and exits 1), not "0 events"
    year_before = (datetime.fromisoformat(since) - year).isoformat()
    empty = subprocess.run(
        [str(TACT), "replay", "--from-topics", *policy, "--out", str(tmp_path / "none.jsonl"),
         "--since", year_before, "--until", (datetime.fromisoformat(since) - year / 2).isoformat()],
        capture_output=True, text=True, timeout=300, env=settings_env(stack),
    )  # fmt: skip
    assert empty.returncode == 1 and "no events in the range (" in empty.stderr


def test_a_backfill_decided_today_is_reported_by_when_it_was_decided(
    stack: Settings, tmp_path: Path, frozen_policy: Any
) -> None:
    """The worker stamps the Actions and Outcomes it writes with the time it writes them: a
    backfill of last month's events is decided today. A report or an evaluation of last
    month's range must find those decisions (by their own `ts` and `decided_at`), and a range
    of today must not."""
    from app.io import clients

    sample, catalog = tmp_path / "sample.jsonl", tmp_path / "catalog.jsonl"
    tact(stack, "sample", "--customers", "80", "--seed", "9", "--events", str(sample),
         "--catalog", str(catalog))  # fmt: skip
    tact(stack, "produce", str(sample))  # the inputs carry their events' times
    actions = tmp_path / "actions.jsonl"
    policy = ["--catalog", str(catalog), "--policy", str(frozen_policy)]
    tact(stack, "replay", str(sample), *policy, "--out", str(actions))
    outcomes = tmp_path / "actions.outcomes.jsonl"
    prod = clients.producer(stack)
    for path, topic in ((actions, stack.topic_actions), (outcomes, stack.topic_outcomes)):
        for line in path.read_bytes().splitlines():  # written now, as a worker would
            prod.send(topic, key=codec.loads(line)["customer_id"].encode(), value=line)
    prod.flush()
    prod.close()
    first = min(map(_seconds, sample.read_bytes().splitlines()))
    since = datetime.fromtimestamp(first, UTC)
    until = since + timedelta(days=14)
    in_range = [
        x for x in actions.read_bytes().splitlines()
        if since.timestamp() <= _seconds(x) <= until.timestamp()
    ]  # fmt: skip
    assert 0 < len(in_range) < len(actions.read_bytes().splitlines())
    period = ["--since", since.isoformat(), "--until", until.isoformat()]
    report = tact(stack, "report", "--from-topics", *period, "--catalog", str(catalog),
                  "--out", str(tmp_path / "report"))  # fmt: skip
    figures = codec.loads((tmp_path / "report" / "report.json").read_bytes())
    assert figures["lines"]["actions"] == len(in_range)
    assert "decided outside the period" in report.stderr
    assert "\r" not in report.stderr  # progress redrawn only on a terminal
    today = subprocess.run(
        [str(TACT), "report", "--from-topics", "--since", datetime.now(UTC).date().isoformat(),
         "--out", str(tmp_path / "today")],
        capture_output=True, text=True, timeout=300, env=settings_env(stack),
    )  # fmt: skip
    assert today.returncode == 1 and "no Actions in the period" in today.stderr
    tact(stack, "replay", "--from-topics", *policy, *period,
         "--out", str(tmp_path / "backtest.jsonl"), "--evaluate")  # fmt: skip
    evaluation = codec.loads((tmp_path / "backtest.evaluation.json").read_bytes())
    assert evaluation["n"] > 20
