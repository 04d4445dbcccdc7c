"""`tact datasets uci`: the UCI Online Retail data as tact events and a catalog."""

from __future__ import annotations

import sys
from pathlib import Path

from app import codec
from app.catalog import write_jsonl
from app.datasets import uci


def run_uci(source: str, events_out: str, catalog_out: str | None, margin: float) -> int:
    stats = uci.UciStats()
    events = uci.convert(uci.read_rows(source), stats)
    with Path(events_out).open("wb") as out:
        for event in events:
            out.write(codec.dumps_line(event))
    say = sys.stderr.write
    say(
        f"{stats.rows:,} rows -> {len(events):,} events ({stats.orders:,} orders, "
        f"{stats.returns:,} cancellations) of {len(stats.customers):,} customers and "
        f"{len(stats.products):,} products, written to {events_out}\n"
    )
    for reason, count in stats.skipped.most_common():
        say(f"  left out: {count:,} rows, {reason}\n")
    if catalog_out:
        specs = uci.catalog(uci.read_rows(source), margin)
        write_jsonl(specs, catalog_out)
        say(
            f"{len(specs):,} products written to {catalog_out} (unit costs assume a "
            f"{margin:.0%} gross margin: the data has none)\n"
        )
    return 0
