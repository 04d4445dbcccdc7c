"""`tact sample`: write a generated event stream and the demo catalog, for trying tact out."""

from __future__ import annotations

import sys
from pathlib import Path

from app import codec
from app.catalog import write_jsonl
from app.sample import DEMO_CATALOG, generate


def run_sample(customers: int, seed: int, events_out: str, catalog_out: str | None) -> int:
    count = 0
    with Path(events_out).open("wb") as out:
        for event in generate(customers, seed=seed):
            out.write(codec.dumps(event) + b"\n")
            count += 1
    if catalog_out:
        write_jsonl(DEMO_CATALOG, catalog_out)
    sys.stderr.write(
        f"wrote {count:,} events of {customers:,} customers to {events_out}"
        + (f" and {len(DEMO_CATALOG)} products to {catalog_out}" if catalog_out else "")
        + "\n"
    )
    return 0
