"""`python -m benchmarks` (or `make bench`): run every benchmark and print its figures."""

from __future__ import annotations

import sys

from benchmarks import latency, replay, simulate, worker_throughput


def main() -> int:
    """Every benchmark with its defaults (replay: 100k customers; worker: 8,000; latency: 300,
    1,000 and 3,000 events/s for 30 s each)."""
    if sys.argv[1:]:
        raise SystemExit("run one benchmark with options: python -m benchmarks.replay --help")
    replay.main([])
    worker_throughput.main([])
    latency.main([])
    simulate.main([])
    return 0


if __name__ == "__main__":
    sys.exit(main())
