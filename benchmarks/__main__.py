"""`python -m benchmarks` (or `make bench`): run every benchmark and print its figures."""

from __future__ import annotations

import sys

from benchmarks import replay, simulate, worker_throughput


def main() -> int:
    """Every benchmark with its defaults (replay: 100k customers; worker: 8,000)."""
    if sys.argv[1:]:
        raise SystemExit("run one benchmark with options: python -m benchmarks.replay --help")
    replay.main([])
    worker_throughput.main([])
    simulate.main([])
    return 0


if __name__ == "__main__":
    sys.exit(main())
