"""The worker's status page and its health verdict, as an operator reads them: no raw `None`, the
group named once, events naming unknown SKUs counted, and one line saying what is wrong first."""

from __future__ import annotations

import re
from typing import Any

import pytest

from app.io import metrics
from app.io.health import Readings, verdict
from app.io.lag import PartitionLag
from app.io.status import Status
from app.settings import Settings

NOWHERE = Settings(kafka_bootstrap="127.0.0.1:1", redis_url="redis://127.0.0.1:1/0")


def text(page: str) -> str:
    """The page as a person reads it: tags gone, spaces collapsed."""
    page = re.sub(r"<head>.*?</head>|</?(b|a)\b[^>]*>", "", page)
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", page)).strip()


def lag(committed: int | None, end: int, time_lag_s: float | None) -> PartitionLag:
    behind = None if committed is None else end - committed
    return PartitionLag("tact", "clickstream", 0, committed, end, behind, time_lag_s, "m-1", "h")


def readings(**changes: Any) -> Readings:
    base: dict[str, Any] = {
        "lag": [lag(10, 10, 0.0)],
        "lag_read": True,
        "lag_error": "",
        "group_missing": False,
        "redis_error": "",
        "lagging_after_s": 300.0,
        "events": 1000.0,
        "unknown_sku_events": 0.0,
    }
    return Readings(**(base | changes))


def test_the_status_rate_falls_to_zero_when_events_stop() -> None:
    status = Status(NOWHERE)
    metrics.EVENTS.labels("page_view").inc(0)
    total = metrics.EVENTS.labels("page_view")
    status.events_per_second(now=1000.0)
    total.inc(300)
    assert status.events_per_second(now=1030.0) == pytest.approx(10.0)
    assert status.events_per_second(now=1045.0) > 0  # still inside the window
    assert status.events_per_second(now=1075.0) == 0.0  # 30 s with nothing new


def test_the_status_page_says_what_runs() -> None:
    about = {"version": "0.1.0", "policy": "default-2026.12", "models": "m1.42"}
    status = Status(NOWHERE.model_copy(update={"app_id": "tact"}), lambda: about)
    page = text(status.page())
    assert page.startswith(
        "tact worker group tact; version 0.1.0; policy default-2026.12; models m1.42; up 0h 0m"
    )
    assert "tact tact" not in page  # the group is named once, not run into the version


def test_a_lag_not_read_yet_is_said_in_words_not_none() -> None:
    status = Status(NOWHERE)
    before = text(status.page())
    assert "lag not measured yet" in before and "records behind" not in before
    status.lag_at = 1.0  # read, but the group has committed nothing anywhere yet
    assert "lag not measured yet" in text(status.page())
    status.lag = [lag(None, 40, None)]  # the group owns it, nothing committed yet
    status.lag_at = 1.0
    page = text(status.page())
    assert "None" not in page
    assert "0 nothing yet 40 not measured yet not measured yet m-1" in page
    assert "0 records behind (+1 partitions with nothing committed yet)" in page


def test_events_naming_unknown_skus_are_counted_on_the_page() -> None:
    status = Status(NOWHERE)
    before = metrics.total("tact_unknown_sku_events_total")
    metrics.UNKNOWN_SKUS.inc(7)
    page = text(status.page())
    assert f"{before + 7:,.0f} naming SKUs not in the catalog (check TACT_CATALOG)" in page


def test_the_page_and_health_say_redis_is_unreachable() -> None:
    status = Status(NOWHERE)
    status.poll_redis()
    assert status.health().word == "Redis unreachable"
    assert "health: Redis unreachable: Redis at redis://127.0.0.1:1/0" in text(status.page())
    said: list[str] = []
    body = status.app({"PATH_INFO": "/health"}, lambda code, headers: said.append(code))
    assert said == ["503 Service Unavailable"]
    assert b"".join(body).startswith(b"Redis unreachable: ")


def test_a_healthy_worker_says_so_in_one_word() -> None:
    health = verdict(readings())
    assert (health.word, health.line(), health.healthy) == ("healthy", "healthy", True)


@pytest.mark.parametrize(
    ("changes", "line"),
    [
        ({"lag": [], "lag_read": False}, "starting: its lag not read yet"),
        (
            {"lag_error": "no consumer group 'tact'", "group_missing": True},
            "starting: the worker's consumer group has not joined",
        ),
        (
            {"lag_error": "reading consumer lag failed: NoBrokersAvailable()"},
            "Kafka unreachable: reading consumer lag failed: NoBrokersAvailable()",
        ),
        (
            {"lag": [lag(100, 350, 301.0), lag(5, 5, 0.0)]},
            "lagging: the oldest unprocessed record is 301 s old, past the policy's freshness "
            "limit of 300 s (250 records behind)",
        ),
        (
            {"unknown_sku_events": 100.0},
            "check the catalog: 10% of events name SKUs not in it (TACT_CATALOG)",
        ),
        (
            {"recent_events": 1000.0, "recent_stale": 600.0},
            "events stale: 60% of the latest events were older than the policy's freshness",
        ),
        (
            {"redis_error": "Redis at r did not answer", "lag": [lag(0, 9, 900.0)]},
            "Redis unreachable: Redis at r did not answer; lagging: the oldest unprocessed",
        ),
    ],
)
def test_the_verdict_names_the_most_serious_problem_first(
    changes: dict[str, Any], line: str
) -> None:
    health = verdict(readings(**changes))
    assert health.line().startswith(line)
    assert not health.healthy


def test_a_little_lag_or_a_few_unknown_skus_is_still_healthy() -> None:
    assert verdict(readings(lag=[lag(100, 350, 299.0)], unknown_sku_events=99.0)).healthy
    assert verdict(readings(lag=[lag(0, 9, 9999.0)], lagging_after_s=None)).healthy
    assert verdict(readings(recent_events=1000.0, recent_stale=499.0)).healthy


def test_the_lag_is_read_again_within_a_second_while_the_group_has_not_joined() -> None:
    """A worker joins its group seconds after its status page starts: the page must not say
    "has not joined" for a whole TACT_LAG_INTERVAL_S (15 s) after the worker has."""
    import threading
    import time

    status = Status(NOWHERE.model_copy(update={"lag_interval_s": 15.0}))
    reads: list[float] = []
    joined = threading.Event()

    def poll_lag() -> None:  # the broker says: no such group, then (second read) the group
        reads.append(time.monotonic())
        status.group_missing = len(reads) == 1
        if len(reads) == 2:
            joined.set()

    status.poll_lag = poll_lag  # type: ignore[method-assign]
    status.poll_redis = lambda: None  # type: ignore[method-assign]
    thread = threading.Thread(target=status._run, daemon=True)
    thread.start()
    try:
        assert joined.wait(5.0), "the lag was not read again while the group was missing"
    finally:
        status._stop.set()
        thread.join(5.0)
    assert len(reads) == 2  # then every interval again, not every second


def test_events_stale_speaks_of_the_latest_events_not_of_all_since_the_start() -> None:
    """A backfill read stale makes the verdict `events stale`; once the stream is fresh again
    for a lag interval or two, it no longer does (a readiness probe must not fail forever)."""
    from app.io.status import _counts

    status = Status(NOWHERE)
    status.lag_at = 1.0  # its lag was read: not "starting"
    status._marks = [_counts()]
    metrics.EVENTS.labels("page_view").inc(100)
    metrics.STALE.inc(100)
    assert status.health().line().startswith("events stale: 100% of the latest events")
    status._marks = [_counts(), _counts()]  # two polls later
    metrics.EVENTS.labels("page_view").inc(50)  # fresh ones
    assert status.health().healthy
