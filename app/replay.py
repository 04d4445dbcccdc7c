"""Replaying a file of events through the engine: lines in, encoded actions and dead letters out.

Pure apart from the callbacks it is given: `tact replay` (app/cli/replay.py) wires it to files,
a progress bar and a summary.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Final

from app import codec
from app.actions import encode_line, encode_outcome_line
from app.decode import DEFAULT_MAX_EVENT_BYTES, decode_event
from app.engine import DecisionEngine
from app.errors import BadInput
from schemas import Action, Outcome

_RAW_LIMIT: Final = 64 * 1024  # of a bad line, this much is kept in its dead letter


@dataclass(slots=True)
class ReplayStats:
    lines: int = 0
    blank: int = 0
    events: int = 0
    actions: int = 0
    holdout: int = 0
    plays: Counter[str] = field(default_factory=Counter)
    channels: Counter[str] = field(default_factory=Counter)
    suppressions: Counter[str] = field(default_factory=Counter)
    dead_letters: Counter[str] = field(default_factory=Counter)
    outcomes: Counter[str] = field(default_factory=Counter)  # by status
    bytes_read: int = 0
    started: float = field(default_factory=time.perf_counter)
    finished: float = 0.0

    @property
    def seconds(self) -> float:
        return (self.finished or time.perf_counter()) - self.started

    @property
    def events_per_second(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else 0.0

    def count(self, action: Action) -> None:
        self.actions += 1
        self.plays[action.play] += 1
        self.channels[action.channel] += 1
        self.holdout += action.holdout
        for suppression in action.suppress:
            self.suppressions[suppression.channel] += 1


def dead_letter(line_number: int, raw: bytes, reason: str, detail: str) -> dict[str, Any]:
    """A dead-letter record for a replay file."""
    return {
        "line": line_number,
        "reason": reason,
        "detail": detail,
        "raw": raw[:_RAW_LIMIT].decode("utf-8", errors="replace"),
        "raw_bytes": len(raw),
    }


class Publications:
    """What the engine learns reaches its models as `tact learner` publishes them
    (app/io/learner.py), on the policy's cadence in event time: recorded as it is learned, and
    folded in order every `learning.snapshot_changes` changes or `snapshot_seconds` of event
    time, whichever comes first. A replay then decides as workers with a learner do (their
    models move only at publications), and is as deterministic as one that learns at once."""

    def __init__(self, engine: DecisionEngine) -> None:
        spec = engine.policy.learning
        self.engine = engine
        self.changes, self.seconds = spec.snapshot_changes, spec.snapshot_seconds
        self.pending: list[Any] = []
        self.since: float | None = None  # the event time of the last publication
        self.published = 0
        engine.models.sink = self.pending.append

    def after(self, t: float) -> None:
        """After an event at `t`: publish when the cadence says so."""
        if self.since is None:
            self.since = t
        if len(self.pending) >= self.changes or (self.pending and t - self.since >= self.seconds):
            self.publish(t)

    def publish(self, t: float) -> None:
        models = self.engine.models
        for op in self.pending:  # (applied, not given to the sink again)
            models.apply(op)
        self.pending.clear()
        self.published += 1
        models.publication = self.published
        self.since = t

    def finish(self) -> None:
        """The replay ended: what is still recorded is published, and the engine learns at
        once again (as the Python API's engine does)."""
        if self.pending:
            self.publish(self.since or 0.0)
        self.engine.models.sink = None


class Replayer:
    def __init__(
        self,
        engine: DecisionEngine,
        max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES,
        learner: bool = False,
    ) -> None:
        self.engine = engine
        self.max_event_bytes = max_event_bytes
        # as workers with `tact learner` (else the engine learns at once, as one worker does)
        self.publications = Publications(engine) if learner else None

    def run(
        self,
        lines: Iterable[bytes],
        write_action: Callable[[bytes], object],
        write_dead_letter: Callable[[bytes], object],
        progress: Callable[[ReplayStats], None] | None = None,
        progress_every: int = 4096,
        write_outcome: Callable[[bytes], object] | None = None,
    ) -> ReplayStats:
        """Each non-blank line is one event; each action, dead letter and outcome is handed
        over as a line of JSON, newline included. Outcomes come as their windows close; at the
        end, windows still open are written as `censored` (what was known by then)."""
        stats = ReplayStats()
        engine, limit, publications = self.engine, self.max_event_bytes, self.publications
        for number, line in enumerate(lines, start=1):
            stats.lines = number
            stats.bytes_read += len(line)
            raw = line.rstrip(b"\r\n")
            if not raw or raw.isspace():
                stats.blank += 1
                continue
            try:
                event = decode_event(raw, None, limit)
            except BadInput as exc:
                stats.dead_letters[exc.reason] += 1
                write_dead_letter(
                    codec.dumps_line(dead_letter(number, raw, exc.reason, exc.detail))
                )
                continue
            stats.events += 1
            for action in engine.process_event(event):
                stats.count(action)
                write_action(encode_line(action))
            self._outcomes(engine.take_outcomes(), stats, write_outcome)
            if publications is not None:
                publications.after(event.ts.timestamp())
            if progress is not None and number % progress_every == 0:
                progress(stats)
        self._outcomes(engine.flush(), stats, write_outcome)
        if publications is not None:
            publications.finish()
        stats.finished = time.perf_counter()
        return stats

    @staticmethod
    def _outcomes(
        outcomes: list[Outcome], stats: ReplayStats, write: Callable[[bytes], object] | None
    ) -> None:
        for outcome in outcomes:
            stats.outcomes[outcome.status] += 1
            if write is not None:
                write(encode_outcome_line(outcome))
