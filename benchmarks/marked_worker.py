"""`tact worker` with its RSS marked at each step of every batch: one JSON line a batch to
the file BENCH_MARKS_FILE names (`python -m benchmarks.worker_throughput --marks FILE`), and
`summary` to say which steps grow it. The worker's code is not changed: its steps are wrapped
from outside, in this process only. (RSS from /proc: Linux.)

Marks like these found the worker's largest swing (README "orjson's buffers"): handing a
batch's records to the producer added 26-30 MiB, held until the heap trimmer's next call.
"""

from __future__ import annotations

import itertools
import os
import sys
from collections.abc import Iterable, Sequence
from typing import Any

import orjson

# The steps of a batch, each named by what happened since the mark before it
STEPS = (
    ("decide", "claim, load the batch's customers and sweep"),
    ("decided", "decide: fold, close windows"),
    ("encoded", "encode the Actions, Outcomes and dead letters"),
    ("handed", "hand them to the producer"),
    ("delivered", "wait for their delivery"),
    ("dumped", "the states as bytes"),
    ("committed", "the checkpoint in Redis"),
    ("trimmed", "trim: states to cold bytes, or dropped"),
)


def rss_mib(pid: int | str = "self", field: str = "VmRSS") -> float:
    """A process's RSS now (VmRSS), or its peak (VmHWM), in MiB."""
    with open(f"/proc/{pid}/status", "rb") as status:
        for line in status:
            if line.startswith(f"{field}:".encode()):
                return int(line.split()[1]) / 1024
    return float("nan")


class Marks:
    """The marks of the batch under way."""

    def __init__(self, path: str) -> None:
        self.out = open(path, "ab", buffering=0)  # noqa: SIM115 (open for the process's life)
        self.marks: list[tuple[str, float]] = []

    def mark(self, step: str) -> None:
        self.marks.append((step, rss_mib()))

    def write(self, records: int) -> None:
        line = {"records": records, "marks": self.marks}
        self.out.write(orjson.dumps(line, option=orjson.OPT_APPEND_NEWLINE))
        self.marks = []


class _Engine:
    def __init__(self, engine: Any, marks: Marks) -> None:
        object.__setattr__(self, "_engine", engine)
        object.__setattr__(self, "_marks", marks)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._engine, name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._engine, name, value)

    def dump(self, customer_ids: Iterable[str]) -> dict[str, bytes]:
        self._marks.mark("delivered")
        saved: dict[str, bytes] = self._engine.dump(customer_ids)
        self._marks.mark("dumped")
        return saved

    def trim(self, *args: Any) -> list[str]:
        self._marks.mark("committed")
        dropped: list[str] = self._engine.trim(*args)
        return dropped


class _Pipeline:
    def __init__(self, pipeline: Any, marks: Marks) -> None:
        object.__setattr__(self, "_pipeline", pipeline)
        object.__setattr__(self, "_marks", marks)
        object.__setattr__(self, "engine", _Engine(pipeline.engine, marks))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._pipeline, name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._pipeline, name, value)

    def decide(self, prepared: Any, now: float | None = None) -> Any:
        self._marks.mark("decide")
        result = self._pipeline.decide(prepared, now=now)
        self._marks.mark("decided")
        return result


def install(path: str) -> None:
    """Wrap DecisionWorker's steps to mark each batch into `path`."""
    from agents.worker import DecisionWorker

    marks = Marks(path)
    handle, send_all = DecisionWorker._handle, DecisionWorker._send_all

    async def _handle(self: Any, records: Sequence[Any], now: float) -> bool:
        pipeline, send = self.pipeline, self.send
        marks.marks = [("start", rss_mib())]

        async def sending(out: list[Any]) -> Any:
            marks.mark("encoded")
            deliveries = await send(out)
            marks.mark("handed")
            return deliveries

        self.pipeline, self.send = _Pipeline(pipeline, marks), sending
        try:
            done: bool = await handle(self, records, now)
        finally:
            self.pipeline, self.send = pipeline, send
        marks.mark("trimmed")
        marks.write(len(records))
        return done

    async def _send_all(self: Any, result: Any) -> Any:
        deliveries = await send_all(self, result)
        if not marks.marks or marks.marks[-1][0] != "handed":  # (nothing to send)
            marks.mark("encoded")
            marks.mark("handed")
        return deliveries

    DecisionWorker._handle = _handle  # type: ignore[method-assign]
    DecisionWorker._send_all = _send_all  # type: ignore[method-assign]


def summary(lines: Iterable[bytes]) -> list[str]:
    """What each step added to the RSS over all batches (its rises only: the heap trimmer
    gives memory back between batches), its largest rise in one batch, and the batch of the
    highest mark, step by step."""
    rises: dict[str, list[float]] = {step: [] for step, _ in STEPS}
    highest: tuple[float, list[tuple[str, float]]] = (0.0, [])
    batches = 0
    for line in lines:
        marks = [(str(step), float(rss)) for step, rss in orjson.loads(line)["marks"]]
        batches += 1
        for (_, before), (step, after) in itertools.pairwise(marks):
            if step in rises:
                rises[step].append(max(0.0, after - before))
        peak = max(rss for _, rss in marks)
        if peak > highest[0]:
            highest = (peak, marks)
    if not batches:
        return ["no batch was marked"]
    out = [f"RSS marked at each step of {batches:,} batches (MiB; rises only):"]
    order = sorted(STEPS, key=lambda s: -sum(rises[s[0]]))
    for step, what in order:
        if rises[step]:
            out.append(
                f"  {what:<48} {sum(rises[step]):8.0f} in all, at most {max(rises[step]):5.1f}"
            )
    steps = " -> ".join(f"{step} {rss:.0f}" for step, rss in highest[1])
    out.append(f"  the batch of the highest mark ({highest[0]:.0f} MiB): {steps}")
    return out


def main() -> int:
    path = os.environ.get("BENCH_MARKS_FILE")
    if not path:
        print("benchmarks.marked_worker: set BENCH_MARKS_FILE to a file", file=sys.stderr)
        return 2
    install(path)
    from app.cli import main as tact

    return tact(["worker"])


if __name__ == "__main__":
    sys.exit(main())
