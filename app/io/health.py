"""The worker's health in one line, for the status page: what an operator should look at first.

Read from what the status page already measures (the group's lag, a Redis ping, the event
counters), most serious first: Redis or Kafka unreachable, the group not joined yet, lagging
(the oldest unprocessed record older than the policy's freshness limit), events naming SKUs the
catalog lacks, most of the latest events read already stale; else healthy.
"""

from __future__ import annotations

from dataclasses import dataclass

from app.io.lag import PartitionLag

# A share of events naming unknown SKUs at which the catalog, not the shop, is the likely cause.
UNKNOWN_SKU_SHARE = 0.10
# A share of the latest events read already stale at which onsite offers mostly expire.
STALE_SHARE = 0.5


@dataclass(frozen=True, slots=True)
class Readings:
    """What the status page read last."""

    lag: list[PartitionLag]
    lag_read: bool  # a lag read has succeeded at least once
    lag_error: str  # the last read's failure ("" when it succeeded)
    group_missing: bool  # the last read found no consumer group (the worker has not joined)
    redis_error: str  # the last ping's failure ("" when Redis answered)
    lagging_after_s: float | None  # the policy's freshness limit (None: never stale)
    events: float
    unknown_sku_events: float
    # events read in the last interval or two, and of them those read past the policy's
    # freshness limit (their onsite and urgent offers go out already expired)
    recent_events: float = 0.0
    recent_stale: float = 0.0


@dataclass(frozen=True, slots=True)
class Health:
    word: str  # healthy, starting, lagging, Redis unreachable, Kafka unreachable,
    # check the catalog, events stale
    detail: str  # what was seen, in words ("" when healthy)

    @property
    def healthy(self) -> bool:
        return self.word == "healthy"

    def line(self) -> str:
        return f"{self.word}: {self.detail}" if self.detail else self.word


def verdict(r: Readings) -> Health:
    """The most serious problem first, the others after it in the detail."""
    problems: list[tuple[str, str]] = []
    if r.redis_error:
        problems.append(("Redis unreachable", r.redis_error))
    if r.lag_error and not r.group_missing:
        problems.append(("Kafka unreachable", r.lag_error))
    elif r.group_missing:
        problems.append(("starting", "the worker's consumer group has not joined yet"))
    elif not r.lag_read:
        problems.append(("starting", "its lag not read yet (every TACT_LAG_INTERVAL_S)"))
    oldest = max((x.time_lag_s or 0.0 for x in r.lag), default=0.0)
    limit = r.lagging_after_s
    if limit is not None and oldest > limit:
        behind = sum(x.lag or 0 for x in r.lag)
        problems.append(
            (
                "lagging",
                f"the oldest unprocessed record is {oldest:,.0f} s old, past the policy's "
                f"freshness limit of {limit:,.0f} s ({behind:,} records behind)",
            )
        )
    if r.unknown_sku_events and r.unknown_sku_events >= UNKNOWN_SKU_SHARE * max(r.events, 1.0):
        problems.append(
            (
                "check the catalog",
                f"{r.unknown_sku_events / max(r.events, 1.0):.0%} of events name SKUs not in "
                "it (TACT_CATALOG): nothing is offered around them",
            )
        )
    if r.recent_stale and r.recent_stale >= STALE_SHARE * max(r.recent_events, 1.0):
        problems.append(
            (
                "events stale",
                f"{r.recent_stale / max(r.recent_events, 1.0):.0%} of the latest events were "
                "older than the policy's freshness limit when read (dated in the past, or "
                "produced late): their onsite and urgent offers go out already expired",
            )
        )
    if not problems:
        return Health("healthy", "")
    word = problems[0][0]
    detail = "; ".join(text if i == 0 else f"{w}: {text}" for i, (w, text) in enumerate(problems))
    return Health(word, detail)
