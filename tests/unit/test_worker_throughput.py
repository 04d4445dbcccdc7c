"""benchmarks.worker_throughput's reading of a process's CPU time."""

from __future__ import annotations

import os
import time

from benchmarks.worker_throughput import cpu_seconds


def test_cpu_seconds_reads_the_time_a_process_has_taken() -> None:
    before, mine, system = cpu_seconds(os.getpid()), time.process_time(), os.times().system
    deadline = mine + 0.4
    while time.process_time() < deadline:  # (work, not sleep: only CPU counts)
        sum(range(1_000))
        for _ in range(20):
            os.stat("/")  # (system time too: the user time alone is not the answer)
    taken, measured = cpu_seconds(os.getpid()) - before, time.process_time() - mine
    assert os.times().system - system > 0.05  # (else the test could not tell)
    assert abs(taken - measured) < 0.05, (taken, measured)  # (ticks of 10 ms)
