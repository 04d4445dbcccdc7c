"""`tact produce FILE`: a JSONL file of events into the input topics, as a store's producers
would send them (keyed by customer, record timestamps from the events' times). Lines that are
not valid events, and events dated more than 5 minutes ahead of the clock (a broker refuses a
whole batch for one of those), go to a dead-letter file with the reason, never to Kafka.
Events older than the policy's freshness limit as they are sent are produced, with a warning:
the worker will take them for stale and no connector will deliver their Actions."""

from __future__ import annotations

import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from app import codec
from app.cli.replay import LazyFile, beside
from app.decode import decode_event
from app.errors import BadInput, ConfigurationError
from app.io.ingest import Record
from app.replay import dead_letter
from schemas import FAMILY_OF_TYPE

MAX_AHEAD_S = 300.0  # events dated further ahead of this machine's clock are not produced


@dataclass(slots=True)
class Staleness:
    """How many events were already older than the policy's freshness limit
    (`freshness.max_lag_seconds`; None: never stale) when they were sent."""

    limit_s: float | None
    sent: int = 0
    stale: int = 0
    oldest_s: float = 0.0

    def see(self, age_s: float) -> None:
        self.sent += 1
        if self.limit_s is not None and age_s > self.limit_s:
            self.stale += 1
            self.oldest_s = max(self.oldest_s, age_s)

    def warning(self) -> str | None:
        """One line for stderr when any event was stale, else None."""
        if not self.stale:
            return None
        return (
            f"warning: {self.stale:,} of {self.sent:,} events were older than the policy's "
            f"freshness limit ({self.limit_s:g} s; the oldest {_age(self.oldest_s)}) when "
            "sent: the worker treats them as stale, and their Actions expire undelivered "
            "(`tact sample --start now` dates a sample now)"
        )


def _age(seconds: float) -> str:
    for unit, size in (("days", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:,.1f} {unit}"
    return f"{seconds:,.0f} s"


def run_produce(path: str, rate: float | None, dead_letters: str | None) -> int:
    from app.io.ingest import produce_records
    from app.io.kafka_admin import ensure_topics
    from app.policy import load_policy
    from app.settings import load_settings

    settings = load_settings()
    source = Path(path)
    if not source.is_file():
        raise ConfigurationError(f"no such file: {path}")
    staleness = Staleness(load_policy(settings.policy).freshness.max_lag_seconds)
    total = source.stat().st_size
    letters_path = beside(path, dead_letters, "dead-letters")
    letters = LazyFile(letters_path)
    bad: Counter[str] = Counter()
    ensure_topics(settings)
    with source.open("rb") as lines:
        read = _records(lines, settings.max_event_bytes, letters, bad, staleness)

        def shown(n: int) -> None:
            if sys.stderr.isatty():
                done = lines.tell() / total if total else 1.0
                sys.stderr.write(f"\r  {n:,} events produced ({done:.0%} of {path})")

        try:
            done = produce_records(settings, read, rate, shown)
        finally:
            letters.close()
    sent = done.sent
    sys.stderr.write(
        f"\rproduced {sum(sent.values()):,} events from {path} to {settings.kafka_bootstrap}: "
        + (", ".join(f"{topic} {n:,}" for topic, n in sorted(sent.items())) or "none")
        + " (keyed by customer_id; record timestamps = event times)\n"
    )
    if done.refused:
        sys.stderr.write(f"  {done.refusals()}\n")
    stale = staleness.warning()
    if stale:
        sys.stderr.write(f"  {stale}\n")
    ahead = bad.pop("future_timestamp", 0)
    if ahead:
        sys.stderr.write(
            f"  {ahead:,} events dated more than {MAX_AHEAD_S / 60:g} minutes ahead of this "
            f"machine's clock were not produced (a broker refuses them) -> {letters_path}\n"
        )
    if bad:
        sys.stderr.write(
            f"  {sum(bad.values()):,} lines were not valid events and were not produced "
            f"({', '.join(f'{k} {n:,}' for k, n in bad.most_common())}) -> {letters_path}\n"
        )
    return 1 if done.refused else 0


def _records(
    lines: BinaryIO, max_bytes: int, letters: LazyFile, bad: Counter[str], staleness: Staleness
) -> Iterator[Record]:
    for number, line in enumerate(lines, start=1):
        raw = line.rstrip(b"\r\n")
        if not raw or raw.isspace():
            continue
        try:
            event = decode_event(raw, None, max_bytes)
        except BadInput as exc:
            bad[exc.reason] += 1
            letters.write_line(codec.dumps_line(dead_letter(number, raw, exc.reason, exc.detail)))
            continue
        ahead = event.ts.timestamp() - time.time()
        if ahead > MAX_AHEAD_S:
            bad["future_timestamp"] += 1
            detail = (
                f"dated {event.ts.isoformat()}, {ahead / 3600:,.1f} h ahead of this machine's "
                "clock: the broker would refuse it, and the other records of its batch with it"
            )
            letters.write_line(
                codec.dumps_line(dead_letter(number, raw, "future_timestamp", detail))
            )
            continue
        staleness.see(-ahead)
        family = FAMILY_OF_TYPE[event.type]
        yield family, event.customer_id.encode("utf-8"), raw, int(event.ts.timestamp() * 1000)
