"""`tact datasets uci|rees46` (public data as tact events and a catalog) and `tact ingest`
(the same, produced into the input topics)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from app import codec
from app.catalog import write_jsonl
from app.datasets import rees46, uci


def _convert(dataset: str, source: str) -> tuple[list[dict[str, Any]], list[str]]:
    """A dataset's events and lines describing the conversion."""
    stats: Any
    if dataset == "uci":
        stats = uci.UciStats()
        events = uci.convert(uci.read_rows(source), stats)
        what = f"{stats.orders:,} orders, {stats.returns:,} cancellations"
    else:
        stats = rees46.Rees46Stats()
        events = rees46.convert(rees46.read_rows(source), stats)
        what = ", ".join(f"{k} {v:,}" for k, v in stats.by_type.most_common())
    lines = [
        f"{stats.rows:,} rows -> {len(events):,} events ({what}) of "
        f"{len(stats.customers):,} customers and {len(stats.products):,} products"
    ]
    lines += [f"  left out: {n:,} rows, {why}" for why, n in stats.skipped.most_common()]
    return events, lines


def _write_catalog(dataset: str, source: str, catalog_out: str, margin: float | None) -> str:
    module: Any = uci if dataset == "uci" else rees46
    rate = margin if margin is not None else module.DEFAULT_MARGIN
    specs = module.catalog(module.read_rows(source), rate)
    write_jsonl(specs, catalog_out)
    return (
        f"{len(specs):,} products written to {catalog_out} (unit costs assume a {rate:.0%} "
        "gross margin: the data has none)"
    )


def run_dataset(
    dataset: str, source: str, events_out: str, catalog_out: str | None, margin: float | None
) -> int:
    """Convert a public dataset to an events file (and a catalog)."""
    events, lines = _convert(dataset, source)
    with Path(events_out).open("wb") as out:
        for event in events:
            out.write(codec.dumps_line(event))
    for line in [*lines, f"written to {events_out}"]:
        sys.stderr.write(line + "\n")
    if catalog_out:
        sys.stderr.write(_write_catalog(dataset, source, catalog_out, margin) + "\n")
    return 0


def run_ingest(
    dataset: str, source: str, catalog_out: str | None, margin: float | None, rate: float | None
) -> int:
    """Convert a public dataset and produce it into the input topics (TACT_* settings)."""
    from app.io.ingest import produce
    from app.io.kafka_admin import ensure_topics
    from app.settings import load_settings

    settings = load_settings()
    events, lines = _convert(dataset, source)
    for line in lines:
        sys.stderr.write(line + "\n")
    ensure_topics(settings)

    def shown(n: int) -> None:
        if sys.stderr.isatty():
            sys.stderr.write(f"\r  {n:,} of {len(events):,} produced")

    done = produce(settings, events, rate, shown)
    sys.stderr.write(
        f"\rproduced {sum(done.sent.values()):,} events to {settings.kafka_bootstrap}: "
        + ", ".join(f"{topic} {n:,}" for topic, n in sorted(done.sent.items()))
        + " (record timestamps = event times)\n"
    )
    if done.refused:
        sys.stderr.write(f"  {done.refusals()}\n")
    if catalog_out:
        sys.stderr.write(_write_catalog(dataset, source, catalog_out, margin) + "\n")
    return 1 if done.refused else 0
