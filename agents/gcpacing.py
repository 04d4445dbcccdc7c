"""Python's full garbage collections kept out of the event path.

CPython's cyclic collector now and then examines every object the process holds (a full,
generation-2 collection). A worker holds tens of thousands of customers' states, so each of
those took 20 to 150 ms, several times a minute, with every event waiting behind it: at 1,000
events/s they made most of the latency's tail (a worker's gen-2 pauses, measured with
gc.callbacks during `python -m benchmarks.latency`: 87, 95, 115 and 153 ms in 20 s).

`GcPacer` moves what has survived into CPython's permanent generation (`gc.freeze`, which
costs nothing) after a batch, at most once a second and after a collection of the young
generations, so that the collector only ever examines what is new. Objects frozen are
still freed when nothing refers to them; only garbage in reference cycles would stay, so at
the first batch and then at the first batch once `full_every_s` (TACT_GC_FULL_EVERY_S, 600 s)
has passed, everything is unfrozen and collected: one pause of the old kind per interval
instead of several a minute, logged with its length and the objects held before and after.
The pause grows with what the worker holds (61 ms at start-up with the demo's customers; with
a few hundred thousand cached customers expect several hundred ms).

The young generation is collected after YOUNG allocations (net of those freed) rather than
Python's 700 (as `tact replay` does): an event's objects live for thousands of allocations,
and each collection examined those still alive, and moved them on to be examined again. In a
worker at 8,000 customers that was 7.5% of its CPU, now 3.8% (perf samples in
gc_collect_main); a collection of 100,000 young objects takes about 2 ms.

0 leaves Python's collector as it is.
"""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

FREEZE_EVERY_S = 1.0
YOUNG = 100_000  # allocations between collections of the young generation
THRESHOLDS = (YOUNG, 50, 100)  # gc.set_threshold's, here and in `tact replay`


class GcPacer:
    def __init__(
        self,
        full_every_s: float,
        freeze_every_s: float = FREEZE_EVERY_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.full_every_s = full_every_s
        self.freeze_every_s = freeze_every_s
        self.clock = clock
        self.next_full = clock()  # the first batch collects what starting up left
        self.next_freeze = self.next_full
        self.full_collections = 0
        if self.enabled:
            gc.set_threshold(*THRESHOLDS)

    @property
    def enabled(self) -> bool:
        return self.full_every_s > 0

    def after_batch(self) -> None:
        """Called between batches: freeze the survivors, or collect everything when due."""
        if not self.enabled:
            return
        now = self.clock()
        if now >= self.next_full:
            started = time.perf_counter()
            frozen = gc.get_freeze_count()
            gc.unfreeze()
            found = gc.collect()
            gc.freeze()
            self.full_collections += 1
            log.info(
                "full garbage collection: %.0f ms, %d unreachable objects freed, %d objects "
                "held (%d before)",
                (time.perf_counter() - started) * 1000.0,
                found,
                gc.get_freeze_count(),
                frozen,
            )
            self.next_full = now + self.full_every_s
        elif now >= self.next_freeze:
            gc.collect(1)  # the young garbage goes first, so that little is frozen with it
            gc.freeze()
        else:
            return
        self.next_freeze = now + self.freeze_every_s
