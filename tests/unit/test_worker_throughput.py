"""benchmarks.worker_throughput's reading of a process's CPU time."""

from __future__ import annotations

import os
import time

from benchmarks.worker_throughput import cpu_seconds


def test_cpu_seconds_reads_the_time_a_process_has_taken() -> None:
    before, mine = cpu_seconds(os.getpid()), time.process_time()
    deadline = mine + 0.3
    while time.process_time() < deadline:  # (work, not sleep: only CPU counts)
        sum(range(10_000))
    taken, measured = cpu_seconds(os.getpid()) - before, time.process_time() - mine
    assert abs(taken - measured) < 0.05, (taken, measured)  # (ticks of 10 ms)
