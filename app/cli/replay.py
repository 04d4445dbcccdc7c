"""`tact replay`: run the engine over a file of events, write one Action per line."""

from __future__ import annotations

import contextlib
import gc
import sys
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any, BinaryIO

from agents.gcpacing import THRESHOLDS
from app import codec
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
    gc.set_threshold(*THRESHOLDS)


def _lines(source: BinaryIO) -> Iterator[bytes]:
    yield from source


def beside(out: str, given: str | None, suffix: str) -> Path:
    """`given`, or a file named after `out` without its .jsonl: `now.dead-letters.jsonl` beside
    `now.jsonl` (`OUT.<suffix>.jsonl` for an `out` with another ending)."""
    if given:
        return Path(given)
    if out == "-":
        return Path(f"{suffix}.jsonl")
    return Path(f"{out.removesuffix('.jsonl')}.{suffix}.jsonl")


def run_replay(args: Any) -> int:
    """Replay a file of events (or stdin)."""
    with contextlib.ExitStack() as stack:
        source: BinaryIO = (
            sys.stdin.buffer
            if args.events == "-"
            else stack.enter_context(Path(args.events).open("rb", buffering=_BUFFER))
        )
        total = None if args.events == "-" else Path(args.events).stat().st_size
        return _replay(_lines(source), total, args)


def _replay(lines: Iterable[bytes], total: int | None, args: Any) -> int:
    """The replay itself: `args` carries catalog, policy, seed, out, dead_letter, strict,
    outcomes and learner (the command's options)."""
    engine = DecisionEngine.from_files(args.catalog, args.policy, args.seed)
    tune_gc()
    out = args.out
    out_path = None if out == "-" else Path(out)
    letters_path = beside(out, args.dead_letter, "dead-letters")
    outcomes_path = beside(out, args.outcomes, "outcomes")
    progress = Progress(sys.stderr, total)
    letters = LazyFile(letters_path)
    with contextlib.ExitStack() as stack:
        sink: BinaryIO = (
            sys.stdout.buffer
            if out_path is None
            else stack.enter_context(out_path.open("wb", buffering=_BUFFER))
        )
        stack.callback(letters.close)
        outcome_sink = stack.enter_context(outcomes_path.open("wb", buffering=_BUFFER))
        replayer = Replayer(engine, learner=args.learner)
        stats = replayer.run(
            lines,
            sink.write,
            letters.write_line,
            progress,
            write_outcome=outcome_sink.write,
        )
        progress.done()
    _summary(stats, engine, letters_path if sum(stats.dead_letters.values()) else None)
    if replayer.publications is not None:
        sys.stderr.write(
            f"  models         {engine.models.version}: {replayer.publications.published:,} "
            "publications, as a learner publishes\n"
        )
    sys.stderr.write(
        f"  outcomes       {sum(stats.outcomes.values()):,} ({_top(stats.outcomes)}) "
        f"-> {outcomes_path}\n"
    )
    return 1 if args.strict and stats.dead_letters else 0


def run_replay_topics(args: Any) -> int:
    """Replay a time range of the clickstream and orders topics (a backtest), without joining
    any consumer group; optionally report on it and evaluate its policy on what was logged."""
    from app.cli.report import parse_time, read_decided_said, said
    from app.io.topic_reader import RangeProgress, TimedRecord, read_records
    from app.settings import load_settings

    settings = load_settings()
    since, until = parse_time(args.since), parse_time(args.until)
    since_ms = int(since * 1000) if since is not None else None
    until_ms = int(until * 1000) if until is not None else None

    outside: dict[str, int] = {}

    def shown(state: RangeProgress) -> None:
        outside[state.topic] = state.outside
        if sys.stderr.isatty():
            sys.stderr.write(
                f"\r{state.topic}: {state.read:,} read, {state.remaining:,} to the end offset   "
            )

    def read(topic: str) -> list[TimedRecord]:
        records = list(read_records(settings, topic, since_ms, until_ms, shown))
        skipped = outside.get(topic, 0)
        more = f" ({skipped:,} more read, dated outside the range)" if skipped else ""
        said(f"{topic}: {len(records):,} records{more}")
        return records

    def decided(topic: str, field: str) -> list[bytes]:
        return read_decided_said(settings, topic, since, until, field, shown)

    inputs = [settings.topic_clickstream, settings.topic_orders]
    records = [*read(inputs[0]), *read(inputs[1])]
    if not records:
        outside_n = sum(outside.get(t, 0) for t in inputs)
        if outside_n:
            found = f" ({outside_n:,} read, dated outside it)"
        elif since is not None:
            found = " (nothing in the topics from --since on)"
        else:
            found = " (the topics are empty)"
        sys.stderr.write(f"tact replay: no events in the range{found}: nothing to replay\n")
        return 1
    # One sequence, by record time; ties in the order topics, partitions and offsets give.
    records.sort(key=lambda r: (r.timestamp_ms, inputs.index(r.topic), r.partition, r.offset))
    lines = [r.value for r in records]
    code = _replay(lines, None, args)
    if args.report:
        _report(args, lines)
    if args.evaluate:
        logged = decided(settings.topic_actions, "ts")
        outcomes = decided(settings.topic_outcomes, "decided_at")
        _evaluate(args, logged, outcomes, lines)
    return code


def _report(args: Any, events: list[bytes]) -> None:
    from app.catalog import Catalog
    from app.cli.report import summary
    from app.policy import load_policy
    from app.report import analysis, html
    from app.report.data import load

    policy = load_policy(args.policy)
    actions = Path(args.out).read_bytes().splitlines(keepends=True)
    outcomes = beside(args.out, args.outcomes, "outcomes").read_bytes().splitlines(keepends=True)
    data = load(
        actions,
        outcomes,
        events,
        Catalog.from_jsonl(args.catalog),
        policy.priors.value.margin_rate,
        policy.return_handling_cost,
    )
    if not data.customers:
        sys.stderr.write("no actions in the range: no report\n")
        return
    figures = analysis.build(data, seed=args.seed)
    out = Path(args.report)
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.html").write_text(html.render(figures, "tact backtest"), "utf-8")
    (out / "report.json").write_bytes(codec.dumps_sorted(figures) + b"\n")
    print("\n".join(summary(figures)))
    print(f"-> {out / 'report.html'}")


def _evaluate(args: Any, actions: list[bytes], outcomes: list[bytes], events: list[bytes]) -> None:
    from app.catalog import Catalog
    from app.cli.evaluate import summary
    from app.evaluate.offline import evaluate
    from app.policy import load_policy

    candidate = load_policy(args.policy)
    result = evaluate(candidate, Catalog.from_jsonl(args.catalog), actions, outcomes, events)
    if "n" not in result.figures:
        sys.stderr.write("no logged decisions with outcomes in the range: nothing to evaluate\n")
        return
    print("\n".join(summary(result.figures, args.policy or "the built-in policy")))
    path = beside(args.out, None, "evaluation").with_suffix(".json")
    path.write_bytes(codec.dumps_sorted(result.figures) + b"\n")
    print(f"-> {path}")


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
    if engine.unknown_sku_events:
        say(
            f"  unknown SKUs   {engine.unknown_sku_events:,} events name SKUs not in the catalog "
            f"(e.g. {engine.unknown_sku_example}): nothing is offered around them; are the "
            "events and the catalog from the same store?\n"
        )
    say(
        f"  customers      {len(engine.customers):,}; policy {engine.policy.version}, "
        f"models {engine.models.version}\n"
    )
