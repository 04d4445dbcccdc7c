"""The summary of a marked worker's batches (benchmarks/marked_worker.py)."""

from __future__ import annotations

import orjson

from benchmarks.marked_worker import STEPS, summary


def batch(*rss: float) -> bytes:
    steps = ["start", *(step for step, _ in STEPS)]
    return orjson.dumps({"records": 500, "marks": list(zip(steps, rss, strict=True))})


def test_the_summary_adds_each_steps_rises_and_shows_the_highest_batch() -> None:
    lines = [
        batch(100, 101, 104, 104, 130, 130, 130, 131, 131),  # handing over: +26
        batch(120, 120, 122, 122, 125, 125, 125, 125, 90),  # (a fall counts as nothing)
    ]
    said = summary(lines)
    assert said[0].startswith("RSS marked at each step of 2 batches")
    assert "hand them to the producer" in said[1] and "29 in all, at most  26.0" in said[1]
    assert "decide: fold, close windows" in said[2] and "5 in all, at most   3.0" in said[2]
    assert said[-1].startswith("  the batch of the highest mark (131 MiB): start 100 ->")


def test_no_batch_marked_says_so() -> None:
    assert summary([]) == ["no batch was marked"]
