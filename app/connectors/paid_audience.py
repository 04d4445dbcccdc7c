"""The paid-audience connector: who must not be retargeted now, for the ad platforms.

Every Action that suppresses `paid_retargeting` (an onsite upsell, a post-purchase offer, a
protect after a return...) puts its customer in the suppression audience until then, a Redis
sorted set (customer -> until, epoch seconds), and a later, longer suppression extends it;
holdout Actions count too (their customers must not be reached either). `export` writes the
customers suppressed at a moment as a CSV audience file, the format ad platforms upload as an
exclusion list; expired entries are pruned as it goes.
"""

from __future__ import annotations

import csv
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from schemas.types import event_seconds as epoch

CHANNEL = "paid_retargeting"


class PaidAudience:
    name = "paid-audience"
    channels: frozenset[str] = frozenset()  # it delivers nothing: it keeps the audience

    def __init__(self, store: Any, prefix: str) -> None:
        self.store = store
        self.key = f"{prefix}:connector:paid-audience:suppressed"

    def observe(self, action: dict[str, Any]) -> None:
        for quiet in action.get("suppress") or ():
            if quiet.get("channel") == CHANNEL:
                # GT: only ever lengthen a customer's suppression.
                self.store.zadd(self.key, {action["customer_id"]: epoch(quiet["until"])}, gt=True)

    def deliver(self, action: dict[str, Any]) -> None:  # never called: no channels
        return None

    def members(self, at: float | None = None) -> list[tuple[str, float]]:
        """(customer, suppressed until) of everyone suppressed at `at` (default: now)."""
        now = time.time() if at is None else at
        self.store.zremrangebyscore(self.key, "-inf", now)
        found = self.store.zrangebyscore(self.key, f"({now}", "+inf", withscores=True)
        return [((c.decode() if isinstance(c, bytes) else str(c)), float(u)) for c, u in found]

    def export(self, out: TextIO, at: float | None = None) -> int:
        """Write the audience as CSV (`customer_id,suppressed_until`); returns its size."""
        rows = self.members(at)
        writer = csv.writer(out)
        writer.writerow(["customer_id", "suppressed_until"])
        for customer, until in rows:
            writer.writerow([customer, datetime.fromtimestamp(until, UTC).isoformat()])
        return len(rows)


def write_audience(audience: PaidAudience, path: str | Path, at: float | None = None) -> int:
    with Path(path).open("w", newline="", encoding="utf-8") as out:
        return audience.export(out, at)
