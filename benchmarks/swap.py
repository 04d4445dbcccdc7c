"""What a worker with `tact learner` pays to swap in newer models, in process.

Replays a stream into an engine, then times what a swap does (agents/worker.py
`_load_models`): making the models from every field of the published hash, against making
them from the fields the last `--tail` events changed and the models held before them
(`Models.from_fields(changed, base)`, what a worker reads once it holds a publication); and
`restore_models` with the engine's customers in memory (their windows' schedule carries over).
The Redis round trips are not timed here: they move the bytes printed. Nothing is asserted.

    python -m benchmarks.swap --events uci.jsonl --catalog uci-catalog.jsonl --tail 500
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable

from app import codec
from app.engine import DecisionEngine
from app.models import Models


def _ms(call: Callable[[], object], repeat: int = 5) -> float:
    """The fastest of `repeat` runs, in ms (the collector's pauses left out)."""
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        call()
        best = min(best, time.perf_counter() - started)
    return best * 1000.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", required=True, help="events JSONL (e.g. from tact datasets)")
    parser.add_argument("--catalog", required=True, help="its catalog JSONL")
    parser.add_argument("--tail", type=int, default=500, help="events between two publications")
    parser.add_argument("--limit", type=int, help="read at most this many events")
    args = parser.parse_args(argv)
    with open(args.events, "rb") as f:
        lines = f.read().splitlines()[: args.limit]
    cut = max(len(lines) - args.tail, 0)
    engine = DecisionEngine.from_files(args.catalog)
    settings = engine._model_settings()
    for line in lines[:cut]:
        engine.process(codec.loads(line))
    fields = dict(engine.models_changes())
    base = Models.from_fields(fields, **settings)
    for line in lines[cut:]:
        engine.process(codec.loads(line))
    changed = dict(engine.models_changes())
    every = {**fields, **changed}
    whole = _ms(lambda: Models.from_fields(every, **settings))
    part = _ms(lambda: Models.from_fields(changed, base, **settings))
    swap = _ms(lambda: engine.restore_models(changed, changed_only=True))
    print(
        f"{len(lines):,} events, {len(engine.customers):,} customers in memory\n"
        f"models: {len(every):,} fields, {sum(map(len, every.values())):,} bytes; the last "
        f"{args.tail:,} events changed {len(changed):,} fields, "
        f"{sum(map(len, changed.values())):,} bytes\n"
        f"made from every field {whole:.1f} ms; from what changed and the models before "
        f"{part:.1f} ms; restore_models of what changed, customers kept {swap:.1f} ms"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
