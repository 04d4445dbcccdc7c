"""The worker gives the memory freed inside its heap back to the system, at most every
`TACT_HEAP_TRIM_EVERY_S` (agents/heap.py)."""

from __future__ import annotations

import platform

from agents.heap import HeapTrimmer, _malloc_trim


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_heap_is_trimmed_between_batches_at_most_every_interval() -> None:
    clock, calls = Clock(), []
    trimmer = HeapTrimmer(1.0, clock, calls.append)
    for step in (0.0, 0.5, 0.6, 0.3, 1.5, 0.1):
        clock.now += step
        trimmer.after_batch()
    assert calls == [0, 0]  # at 101.1 and 102.9 (the first a full interval after start)


def test_zero_never_trims() -> None:
    clock, calls = Clock(), []
    trimmer = HeapTrimmer(0.0, clock, calls.append)
    assert trimmer.trim is None
    clock.now += 10_000
    trimmer.after_batch()
    assert calls == []


def test_glibcs_malloc_trim_is_found_where_there_is_glibc() -> None:
    trim = _malloc_trim()
    assert (trim is not None) == (platform.libc_ver()[0] == "glibc")
    if trim is not None:
        trim(0)  # (returns 1 when memory went back, 0 when none could)
