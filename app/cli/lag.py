"""`tact lag`: consumer lag per group, topic and partition; non-zero exit over a threshold."""

from __future__ import annotations

import sys
from typing import Any

from app import codec
from app.io.lag import PartitionLag, group_lag
from app.settings import load_settings


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 120:
        return f"{seconds:.1f}s"
    if seconds < 7200:
        return f"{seconds / 60:.1f}m"
    return f"{seconds / 3600:.1f}h"


def _cell(value: int | None) -> str:
    return "-" if value is None else str(value)


def run_lag(args: Any) -> int:
    settings = load_settings()
    groups = args.group or [settings.app_id]
    rows = group_lag(settings, groups)
    over = [
        r
        for r in rows
        if (args.max_lag is not None and r.lag is not None and r.lag > args.max_lag)
        or (
            args.max_time_lag is not None
            and r.time_lag_s is not None
            and r.time_lag_s > args.max_time_lag
        )
    ]
    if args.json:
        print(codec.dumps({"partitions": [r.as_dict() for r in rows], "over": len(over)}).decode())
    else:
        print("\n".join(table(rows)))
    if over:
        shown = ", ".join(f"{r.group}/{r.topic}:{r.partition}" for r in over[:10])
        print(f"tact lag: {len(over)} partitions over the threshold: {shown}", file=sys.stderr)
        return 1
    return 0


def table(rows: list[PartitionLag]) -> list[str]:
    head = ("GROUP", "TOPIC", "PARTITION", "COMMITTED", "END", "LAG", "TIME-LAG", "CONSUMER")
    body = [
        (
            r.group,
            r.topic,
            str(r.partition),
            _cell(r.committed),
            str(r.end),
            _cell(r.lag),
            _age(r.time_lag_s),
            r.consumer if r.consumer == "-" else f"{r.consumer} ({r.host})",
        )
        for r in rows
    ]
    widths = [max(len(h), *(len(b[i]) for b in body)) for i, h in enumerate(head)]
    lines = ["  ".join(v.ljust(w) for v, w in zip(head, widths, strict=True)).rstrip()]
    lines += ["  ".join(v.ljust(w) for v, w in zip(b, widths, strict=True)).rstrip() for b in body]
    groups = sorted({r.group for r in rows})
    for group in groups:
        mine = [r for r in rows if r.group == group]
        lag = sum(r.lag or 0 for r in mine)
        oldest = max((r.time_lag_s or 0.0 for r in mine), default=0.0)
        lines.append(
            f"{group}: lag {lag} records over {len(mine)} partitions, "
            f"oldest unprocessed {_age(oldest)}"
        )
    if not rows:
        lines.append("no committed offsets or members for these groups")
    return lines
