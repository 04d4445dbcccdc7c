"""`tact replay`: run the engine over a file of events, write one Action per line."""

from __future__ import annotations

import contextlib
import gc
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import IO, BinaryIO

from app.engine import DecisionEngine
from app.replay import Replayer, ReplayStats

_BUFFER = 1 << 20


class LazyFile:
    """A file opened only when the first line is written (no empty dead-letter files)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file: BinaryIO | None = None

    def write_line(self, data: bytes) -> None:
        if self._file is None:
            self._file = self.path.open("wb")
        self._file.write(data)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()


class Progress:
    """A one-line progress bar on a terminal; silent otherwise."""

    def __init__(self, stream: IO[str], total_bytes: int | None) -> None:
        self.stream = stream
        self.total = total_bytes
        self.enabled = stream.isatty()

    def __call__(self, stats: ReplayStats) -> None:
        if not self.enabled:
            return
        rate = stats.events_per_second
        if self.total:
            share = min(stats.bytes_read / self.total, 1.0)
            bar = "#" * int(share * 30)
            head = f"[{bar:<30}] {share:4.0%}"
        else:
            head = f"{stats.bytes_read / 1e6:8.1f} MB"
        self.stream.write(
            f"\r{head}  {stats.events:,} events  {rate:,.0f}/s  "
            f"{stats.actions:,} actions  {sum(stats.dead_letters.values())} dead"
        )
        self.stream.flush()

    def done(self) -> None:
        if self.enabled:
            self.stream.write("\r" + " " * 100 + "\r")


def tune_gc() -> None:
    """A replay keeps every customer's state alive: hundreds of thousands of small objects the
    cyclic collector would otherwise rescan again and again (about 12% of the time). Objects
    loaded so far are frozen out of collection and full collections are made rare."""
    gc.freeze()
    gc.set_threshold(100_000, 50, 100)


def _lines(source: BinaryIO) -> Iterator[bytes]:
    yield from source


def beside(out: str, given: str | None, suffix: str) -> Path:
    """`given`, or a file named after the actions file (`OUT.<suffix>.jsonl`)."""
    if given:
        return Path(given)
    return Path(f"{out}.{suffix}.jsonl") if out != "-" else Path(f"{suffix}.jsonl")


def run_replay(
    events: str,
    catalog: str,
    policy: str | None,
    seed: int,
    out: str,
    dead_letter: str | None,
    strict: bool,
    outcomes: str | None = None,
) -> int:
    engine = DecisionEngine.from_files(catalog, policy, seed)
    tune_gc()
    out_path = None if out == "-" else Path(out)
    letters_path = beside(out, dead_letter, "dead-letters")
    outcomes_path = beside(out, outcomes, "outcomes")
    total = None if events == "-" else Path(events).stat().st_size
    progress = Progress(sys.stderr, total)
    letters = LazyFile(letters_path)
    with contextlib.ExitStack() as stack:
        source: BinaryIO = (
            sys.stdin.buffer
            if events == "-"
            else stack.enter_context(Path(events).open("rb", buffering=_BUFFER))
        )
        sink: BinaryIO = (
            sys.stdout.buffer
            if out_path is None
            else stack.enter_context(out_path.open("wb", buffering=_BUFFER))
        )
        stack.callback(letters.close)
        outcome_sink = stack.enter_context(outcomes_path.open("wb", buffering=_BUFFER))
        stats = Replayer(engine).run(
            _lines(source),
            sink.write,
            letters.write_line,
            progress,
            write_outcome=outcome_sink.write,
        )
        progress.done()
    _summary(stats, engine, letters_path if sum(stats.dead_letters.values()) else None)
    sys.stderr.write(
        f"  outcomes       {sum(stats.outcomes.values()):,} ({_top(stats.outcomes)}) "
        f"-> {outcomes_path}\n"
    )
    return 1 if strict and stats.dead_letters else 0


def _top(counter: Counter[str]) -> str:
    return ", ".join(f"{k} {v:,}" for k, v in counter.most_common()) or "none"


def _summary(stats: ReplayStats, engine: DecisionEngine, letters: Path | None) -> None:
    say = sys.stderr.write
    dead = sum(stats.dead_letters.values())
    say(
        f"replay: {stats.events:,} events in {stats.seconds:.1f} s "
        f"({stats.events_per_second:,.0f} events/s)"
        + (f", {stats.blank} blank lines skipped" if stats.blank else "")
        + "\n"
    )
    say(f"  actions        {stats.actions:,} (holdout {stats.holdout:,})\n")
    say(f"  by play        {_top(stats.plays)}\n")
    say(f"  by channel     {_top(stats.channels)}\n")
    say(f"  suppressions   {sum(stats.suppressions.values()):,} ({_top(stats.suppressions)})\n")
    say(
        f"  dead letters   {dead:,}"
        + (f" ({_top(stats.dead_letters)}) -> {letters}" if letters else "")
        + "\n"
    )
    say(
        f"  customers      {len(engine.customers):,}; policy {engine.policy.version}, "
        f"models {engine.models.version}\n"
    )
