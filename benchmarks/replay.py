"""`tact replay` end to end, pinned to one core: events/s and peak memory.

Two streams:
- generated: `tact sample` customers (default 100,000), their events in time order;
- uci: the UCI Online Retail data (real orders and cancellations), converted by
  `tact datasets uci` from ../shared/datasets (skipped with a note when it is not there).

Each replay runs as its own `tact replay` process (taskset to CPU 0 where available); peak
memory is the child's maximum resident set. Nothing is asserted: figures are printed, and
written as JSON with --json.

    python -m benchmarks.replay --customers 100000
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from app import CORE_BUILD  # the tact run below decides the same way (same checkout, same env)

ROOT = Path(__file__).resolve().parents[1]
TACT = Path(sys.executable).with_name("tact")
UCI = ROOT.parent / "shared" / "datasets" / "uci_online_retail" / "online_retail.csv.gz"


def _tact(*args: str, pin: bool = True) -> tuple[float, float, str]:
    """Run a tact command; return (seconds, its peak RSS in MiB, its stderr)."""
    command = [str(TACT), *args]
    if pin and shutil.which("taskset"):
        command = ["taskset", "-c", "0", *command]
    started = time.perf_counter()
    with tempfile.TemporaryFile("w+") as err:
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=err)
        _, status, usage = os.wait4(process.pid, 0)
        seconds = time.perf_counter() - started
        process.returncode = os.waitstatus_to_exitcode(status)
        err.seek(0)
        stderr = err.read()
    if process.returncode:
        raise SystemExit(f"{' '.join(command)} failed:\n{stderr}")
    return seconds, usage.ru_maxrss / 1024, stderr


def _replay(name: str, events: Path, catalog: Path, work: Path) -> dict[str, object]:
    out = work / f"{name}-actions.jsonl"
    seconds, peak, summary = _tact(
        "replay", str(events), "--catalog", str(catalog), "--out", str(out)
    )
    lines = sum(1 for _ in events.open("rb"))
    actions = sum(1 for _ in out.open("rb"))
    result = {
        "stream": name,
        "events": lines,
        "actions": actions,
        "seconds": round(seconds, 2),
        "events_per_s": round(lines / seconds),
        "peak_rss_mib": round(peak),
        "core": CORE_BUILD,
    }
    print(
        f"{name:>9}: {lines:,} events -> {actions:,} actions in {seconds:.1f} s = "
        f"{lines / seconds:,.0f} events/s end to end (process start included); "
        f"peak RSS {peak:,.0f} MiB; core: {CORE_BUILD}"
    )
    for line in summary.splitlines():
        print(f"           {line}")
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--work", default=str(ROOT / ".run" / "bench"), help="scratch folder")
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args(argv)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    results = []

    events, catalog = work / "generated.jsonl", work / "catalog.jsonl"
    seconds, _, _ = _tact(
        "sample",
        "--customers",
        str(args.customers),
        "--seed",
        "1",
        "--events",
        str(events),
        "--catalog",
        str(catalog),
        pin=False,
    )
    print(f"generated {args.customers:,} customers' events in {seconds:.1f} s")
    results.append(_replay("generated", events, catalog, work))

    if UCI.is_file():
        uci_events, uci_catalog = work / "uci.jsonl", work / "uci-catalog.jsonl"
        _tact(
            "datasets",
            "uci",
            "--source",
            str(UCI),
            "--events",
            str(uci_events),
            "--catalog",
            str(uci_catalog),
            pin=False,
        )
        results.append(_replay("uci", uci_events, uci_catalog, work))
    else:
        print(f"uci: {UCI} not found; skipped")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
