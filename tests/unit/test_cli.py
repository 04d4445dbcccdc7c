"""The `tact` commands that need no services: sample, replay, policy validate and explain."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from app import codec
from app.cli import main
from app.cli.produce import Staleness, _records
from app.cli.replay import LazyFile

TACT = Path(sys.executable).with_name("tact")


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("replay")
    events, catalog = d / "events.jsonl", d / "catalog.jsonl"
    assert (
        main(
            [
                "sample",
                "--customers",
                "150",
                "--seed",
                "9",
                "--events",
                str(events),
                "--catalog",
                str(catalog),
            ]
        )
        == 0
    )
    return {"dir": d, "events": events, "catalog": catalog}


def replay(files: dict[str, Path], events: Path, out: str, *extra: str) -> int:
    return main(
        [
            "replay",
            str(events),
            "--catalog",
            str(files["catalog"]),
            "--out",
            str(files["dir"] / out),
            *extra,
        ]
    )


def test_two_replays_are_identical(files: dict[str, Path]) -> None:
    assert replay(files, files["events"], "a.jsonl") == 0
    assert replay(files, files["events"], "b.jsonl") == 0
    a = (files["dir"] / "a.jsonl").read_bytes()
    assert a and a == (files["dir"] / "b.jsonl").read_bytes()
    for line in a.splitlines()[:50]:
        assert codec.loads(line)["policy_version"].startswith("default")


def test_a_replay_as_with_a_learner_says_how_often_it_published(
    files: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    assert replay(files, files["events"], "learner.jsonl", "--learner") == 0
    published = int(capsys.readouterr().err.split(" publications, as a learner")[0].split()[-1])
    versions = [
        codec.loads(line)["model_version"]
        for line in (files["dir"] / "learner.jsonl").read_bytes().splitlines()
    ]
    # (the last publication, at the end of the file, of what its last events taught, decided
    # nothing)
    assert published > 1 and versions[-1].endswith(f".v{published - 1}")


def test_bad_lines_become_dead_letters_and_change_nothing(
    files: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    good = files["events"].read_bytes().splitlines()
    garbage = [
        b"{not json",
        b"[1, 2]",
        b'{"type": "teleport", "customer_id": "c"}',
        b'{"event_id": "x", "type": "add_to_cart", "customer_id": "c", "ts": 0}',
    ]
    mixed = []
    for i, line in enumerate(good):
        mixed.append(line)
        if i % 400 == 7:
            mixed.append(garbage[i % len(garbage)])
    mixed += [b"", b"   "]
    dirty = files["dir"] / "dirty.jsonl"
    dirty.write_bytes(b"\n".join(mixed) + b"\n")
    assert replay(files, files["events"], "clean-out.jsonl") == 0
    assert (
        replay(files, dirty, "dirty-out.jsonl", "--dead-letter", str(files["dir"] / "dead.jsonl"))
        == 0
    )
    clean = (files["dir"] / "clean-out.jsonl").read_bytes()
    assert (files["dir"] / "dirty-out.jsonl").read_bytes() == clean
    letters = [codec.loads(x) for x in (files["dir"] / "dead.jsonl").read_bytes().splitlines()]
    assert len(letters) == sum(1 for i in range(len(good)) if i % 400 == 7)
    assert {x["reason"] for x in letters} <= {"not_json", "not_object", "unknown_type", "schema"}
    assert all(x["line"] > 0 and x["raw"] and x["detail"] for x in letters)
    err = capsys.readouterr().err
    assert "dead letters" in err and "blank lines skipped" in err
    assert replay(files, dirty, "strict.jsonl", "--strict") == 1
    assert (files["dir"] / "strict.dead-letters.jsonl").is_file()


def test_summary_counts_actions(files: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    replay(files, files["events"], "summary.jsonl")
    err = capsys.readouterr().err
    lines = (files["dir"] / "summary.jsonl").read_bytes().splitlines()
    assert f"actions        {len(lines):,}" in err
    assert "events/s" in err and "by play" in err and "by channel" in err
    assert "unknown SKUs" not in err  # the sample's events and catalog agree


def test_a_catalog_that_lacks_the_events_skus_is_called_out(
    files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    other = tmp_path / "other.jsonl"
    other.write_bytes(b'{"sku": "ELSEWHERE-1", "price": 10, "unit_cost": 4}\n')
    assert replay({**files, "catalog": other}, files["events"], str(tmp_path / "o.jsonl")) == 0
    err = capsys.readouterr().err
    assert "events name SKUs not in the catalog (e.g. RUN-" in err


def test_replay_reads_stdin_and_writes_stdout(files: dict[str, Path], tmp_path: Path) -> None:
    out = subprocess.run(
        [str(TACT), "replay", "-", "--catalog", str(files["catalog"]), "--out", "-"],
        input=files["events"].read_bytes(),
        capture_output=True,
        check=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert replay(files, files["events"], "stdout-check.jsonl") == 0  # the same, to a file
    assert out.stdout == (files["dir"] / "stdout-check.jsonl").read_bytes()
    assert (tmp_path / "outcomes.jsonl").stat().st_size > 0  # beside stdout: the working directory


def test_policy_validate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    default = Path(__file__).resolve().parents[2] / "app" / "policies" / "default.yaml"
    assert main(["policy", "validate", str(default)]) == 0
    assert "valid policy default" in capsys.readouterr().out
    broken = tmp_path / "broken.yaml"
    broken.write_text(
        default.read_text()
        .replace("margin_thin_below: 0.15", "margin_thin_below: 1.5")
        .replace("email:            {cost: 0.002", "emial:            {cost: 0.002")
    )
    assert main(["policy", "validate", str(broken)]) == 2
    err = capsys.readouterr().err
    assert "segments.margin_thin_below" in err and "emial" in err
    (tmp_path / "notyaml.yaml").write_text("rules: [unclosed")
    assert main(["policy", "validate", str(tmp_path / "notyaml.yaml")]) == 2
    assert main(["policy", "validate", str(tmp_path / "missing.yaml")]) == 2


def test_policy_explain(files: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    customer = codec.loads(files["events"].read_bytes().splitlines()[0])["customer_id"]
    assert (
        main(
            [
                "policy",
                "explain",
                customer,
                "--events",
                str(files["events"]),
                "--catalog",
                str(files["catalog"]),
                "--top",
                "3",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert f"customer {customer}:" in out and "candidates (" in out and "=> " in out
    assert "readiness  confidence" in out and "segments   seg:" in out
    draws = [line for line in out.splitlines() if line.startswith("  draw       (Thompson")]
    assert draws and all("%" in line for line in draws)  # each arm drawn with its probability
    assert (
        main(
            [
                "policy",
                "explain",
                "nobody",
                "--events",
                str(files["events"]),
                "--catalog",
                str(files["catalog"]),
            ]
        )
        == 1
    )


def test_catalog_mistakes_are_named(
    tmp_path: Path, files: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "catalog.jsonl"
    lines = files["catalog"].read_bytes().splitlines()
    bad.write_bytes(b"\n".join([*lines[:3], b'{"sku": "X", "price": -1, "unit_cost": 1}']))
    assert replay({**files, "catalog": bad}, files["events"], "x.jsonl") == 2
    assert f"{bad}:4:" in capsys.readouterr().err
    bad.write_bytes(b'{"sku": "A", "price": 1, "unit_cost": 1, "related": {"upgrade": "B"}}')
    assert replay({**files, "catalog": bad}, files["events"], "x.jsonl") == 2
    assert "unknown SKUs: A -> B" in capsys.readouterr().err
    bad.write_bytes(b'{"sku": "A", "price": "12", "unit_cost": 1}')
    assert replay({**files, "catalog": bad}, files["events"], "x.jsonl") == 2
    assert f"{bad}:1: price: Input should be a valid number" in capsys.readouterr().err


def test_a_product_sold_at_a_loss_is_allowed_with_a_warning(
    tmp_path: Path, files: dict[str, Path], caplog: pytest.LogCaptureFixture
) -> None:
    catalog = tmp_path / "catalog.jsonl"
    lines = files["catalog"].read_bytes().splitlines()
    catalog.write_bytes(b"\n".join([*lines, b'{"sku": "LEADER", "price": 10, "unit_cost": 15}']))
    assert replay({**files, "catalog": catalog}, files["events"], "x.jsonl") == 0
    assert "1 products cost more than their price (e.g. LEADER: unit_cost 15, price 10)" in (
        caplog.text
    )


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["sample", "--customers", "-5", "--events", "e.jsonl"], "--customers: -5 is below 1"),
        (["sample", "--customers", "many", "--events", "e.jsonl"], "'many' is not a whole number"),
        (
            ["sample", "--start", "2026-03-02T09:00", "--events", "e.jsonl"],
            "--start '2026-03-02T09:00': give now, or an ISO-8601 time with a zone",
        ),
        (["sample", "--arrivals", "0", "--events", "e.jsonl"], "--arrivals: 0 is not above 0"),
        (["sample", "--prefix", "a b", "--events", "e.jsonl"], "--prefix: 'a b': 1-32 letters"),
        (["demo", "--rate", "0"], "--rate: 0 is not above 0"),
        (["simulate", "--customers", "0"], "--customers must be at least 10"),
        (["lag", "--max-lag", "-1"], "--max-lag: -1 is below 0"),
        (["lag", "--max-time-lag", "-3"], "--max-time-lag: -3 is not 0 or more"),
        (
            ["replay", "e.jsonl", "--catalog", "c.jsonl", "--out", "a.jsonl", "--since", "2026"],
            "--since and --until go with --from-topics",
        ),
        (
            ["report", "--events", "e.jsonl", "--out", "r", "--since", "2026-03-02T09:00"],
            "time has no zone: '2026-03-02T09:00' (add Z for UTC, or an offset such as +01:00)",
        ),
        (
            ["report", "--events", "e.jsonl", "--out", "r", "--until", "2026-03-02 09:00"],
            "time has no zone: '2026-03-02 09:00'",
        ),
    ],
)
def test_options_out_of_range_are_refused(argv: list[str], says: str, tmp_path: Path) -> None:
    run = subprocess.run(
        [str(TACT), *argv], capture_output=True, text=True, timeout=60, cwd=tmp_path
    )
    assert run.returncode == 2
    assert says in run.stderr and "Traceback" not in run.stderr
    assert not (tmp_path / "e.jsonl").exists()  # refused before writing anything


def test_file_errors_are_reported_not_raised(
    files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        main(
            [
                "replay",
                str(tmp_path / "nope.jsonl"),
                "--catalog",
                str(files["catalog"]),
                "--out",
                str(tmp_path / "out.jsonl"),
            ]
        )
        == 2
    )
    assert "nope.jsonl" in capsys.readouterr().err
    assert (
        main(
            [
                "replay",
                str(files["events"]),
                "--catalog",
                str(files["catalog"]),
                "--out",
                str(tmp_path / "missing-dir" / "out.jsonl"),
            ]
        )
        == 2
    )
    assert "missing-dir" in capsys.readouterr().err


def test_every_command_says_what_it_does_in_its_help() -> None:
    import argparse

    from app.cli import build_parser

    def commands(parser: argparse.ArgumentParser, path: str) -> list[tuple[str, object]]:
        found = [(path, parser)]
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    found += commands(sub, f"{path} {name}")
        return found

    every = commands(build_parser(), "tact")
    assert len(every) >= 25
    assert [path for path, p in every[1:] if not getattr(p, "description", None)] == []


def test_a_sample_dated_now_gives_events_a_worker_takes_as_fresh(tmp_path: Path) -> None:
    """`tact sample --start now --arrivals 2`: the first customers arrive now and most events
    fall within the freshness limit of 5 minutes, so a produced sample gets Actions that a
    connector can deliver; without --start, the sample keeps its fixed date in the past."""
    events = tmp_path / "now.jsonl"
    before = datetime.now(UTC).replace(microsecond=0)
    argv = ["sample", "--customers", "50", "--start", "now", "--arrivals", "2"]
    assert main([*argv, "--events", str(events)]) == 0
    times = [datetime.fromisoformat(codec.loads(x)["ts"]) for x in events.read_bytes().split()]
    assert min(times) >= before
    soon = sum(t - before <= timedelta(minutes=5) for t in times)
    assert soon > len(times) / 2
    assert main(["sample", "--customers", "5", "--events", str(events)]) == 0
    assert codec.loads(events.read_bytes().split()[0])["ts"].startswith("2025-11-03")


def test_a_sample_with_another_prefix_shares_no_customer_or_event_with_the_first(
    tmp_path: Path,
) -> None:
    """Two samples on one stack: the second, with its own --prefix, is not taken for the
    first one's customers and duplicate events."""
    first, second = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    assert main(["sample", "--customers", "20", "--events", str(first)]) == 0
    assert main(["sample", "--customers", "20", "--events", str(second), "--prefix", "t2"]) == 0
    a = [codec.loads(x) for x in first.read_bytes().splitlines()]
    b = [codec.loads(x) for x in second.read_bytes().splitlines()]
    assert len(a) == len(b) and all(e["customer_id"].startswith("t2") for e in b)
    assert not {e["customer_id"] for e in a} & {e["customer_id"] for e in b}
    assert not {e["event_id"] for e in a} & {e["event_id"] for e in b}


def test_produce_counts_the_events_older_than_the_freshness_limit(tmp_path: Path) -> None:
    now = datetime.now(UTC)
    lines = [
        codec.dumps(
            {
                "event_id": f"e{n}",
                "type": "page_view",
                "customer_id": "c1",
                "ts": (now - timedelta(seconds=age)).isoformat(),
                "page": "home",
            }
        )
        for n, age in enumerate((10, 200, 400, 3 * 86400))
    ]
    source = tmp_path / "events.jsonl"
    source.write_bytes(b"\n".join(lines) + b"\n")
    staleness = Staleness(300.0)
    with source.open("rb") as read:
        sent = list(_records(read, 1 << 20, LazyFile(tmp_path / "dl"), Counter(), staleness))
    assert len(sent) == 4 and (staleness.sent, staleness.stale) == (4, 2)
    warning = staleness.warning()
    assert warning is not None and "\n" not in warning
    assert warning.startswith("warning: 2 of 4 events were older than the policy's freshness")
    assert "(300 s; the oldest 3.0 days)" in warning and "--start now" in warning


def test_produce_says_nothing_of_freshness_when_every_event_is_fresh() -> None:
    fresh, never = Staleness(300.0), Staleness(None)
    for age in (0.0, 299.0):
        fresh.see(age)
    never.see(10 * 86400.0)
    assert fresh.warning() is None and never.warning() is None


def test_a_time_is_read_with_its_zone_and_a_bare_date_as_utc_midnight() -> None:
    from datetime import UTC, datetime

    from app.cli.report import parse_time

    nine_utc = datetime(2026, 3, 2, 9, tzinfo=UTC).timestamp()
    assert parse_time("2026-03-02T09:00Z") == nine_utc
    assert parse_time("2026-03-02T10:00+01:00") == nine_utc
    assert parse_time("2026-03-02") == datetime(2026, 3, 2, tzinfo=UTC).timestamp()
    shown = subprocess.run(
        [str(TACT), "report", "--help"], capture_output=True, text=True, timeout=60
    ).stdout
    assert "a bare date is 00:00 UTC; a time without a zone is refused" in " ".join(shown.split())
