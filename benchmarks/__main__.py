"""`python -m benchmarks` (or `make bench`): run every benchmark and print its figures."""

from __future__ import annotations

import sys

from benchmarks import worker_throughput


def main() -> int:
    worker_throughput.main(sys.argv[1:])
    return 0


if __name__ == "__main__":
    sys.exit(main())
