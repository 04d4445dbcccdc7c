"""`tact sample`: write a generated event stream and the demo catalog, for trying tact out."""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from app import codec
from app.catalog import write_jsonl
from app.cli.report import parse_time
from app.errors import ConfigurationError
from app.sample import DEFAULT_START, DEMO_CATALOG, generate


def sample_start(text: str | None, now: datetime) -> datetime:
    """When the first customer arrives: `now` (to the second), an ISO-8601 time with a zone,
    or, when not given, the generator's fixed Monday in the past."""
    if text is None:
        return DEFAULT_START
    if text == "now":
        return now.astimezone(UTC).replace(microsecond=0)
    try:
        return datetime.fromtimestamp(parse_time(text) or 0.0, UTC)
    except ConfigurationError:
        raise ConfigurationError(
            f"--start {text!r}: give now, or an ISO-8601 time with a zone (2026-03-02T09:00Z)"
        ) from None


def run_sample(
    customers: int,
    seed: int,
    events_out: str,
    catalog_out: str | None,
    start: datetime = DEFAULT_START,
    arrivals: timedelta = timedelta(hours=8),
    prefix: str = "c",
) -> int:
    count = 0
    first = last = ""
    with Path(events_out).open("wb") as out:
        for event in generate(
            customers, seed=seed, start=start, arrival_span=arrivals, prefix=prefix
        ):
            out.write(codec.dumps_line(event))
            first, last = first or event["ts"], event["ts"]
            count += 1
    if catalog_out:
        write_jsonl(DEMO_CATALOG, catalog_out)
    sys.stderr.write(
        f"wrote {count:,} events of {customers:,} customers, dated {first} to {last}, "
        f"to {events_out}"
        + (f" and {len(DEMO_CATALOG)} products to {catalog_out}" if catalog_out else "")
        + "\n"
    )
    return 0
