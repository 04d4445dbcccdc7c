"""Memory the worker has freed, given back to the system.

glibc's malloc keeps what a process frees in its heap for later use, and gives back only what
lies at the heap's top. A worker thaws, checkpoints and freezes customers' states all the
time, making and freeing bytes objects of a few KB (larger than Python's own small-object
allocator takes), so its RSS grew to the most it had ever held at once and stayed there
(offline, the generated stream of 20,000 customers with 2,000 hot: 402 MiB at the peak, 400
at the end; with `malloc_trim` every 10 batches, 245 and 234, at 0.24 ms a call).

`HeapTrimmer.after_batch` calls glibc's `malloc_trim(0)` between batches, at most every
`every_s` (TACT_HEAP_TRIM_EVERY_S): the free pages inside the heap go back to the system.
Without glibc (musl, macOS) it does nothing.
"""

from __future__ import annotations

import ctypes
import time
from collections.abc import Callable
from typing import Any


def _malloc_trim() -> Callable[[int], Any] | None:
    """glibc's `malloc_trim`, from the C library the interpreter runs on (None without it)."""
    try:
        return getattr(ctypes.CDLL(None), "malloc_trim", None)
    except OSError:
        return None


class HeapTrimmer:
    """Trims the heap between batches, at most every `every_s` (0: never)."""

    def __init__(
        self,
        every_s: float,
        clock: Callable[[], float] = time.monotonic,
        trim: Callable[[int], Any] | None = None,
    ) -> None:
        self.every_s = every_s
        self.clock = clock
        self.trim = None if every_s <= 0 else trim or _malloc_trim()
        self.next = clock() + every_s

    def after_batch(self) -> None:
        """Called between batches: trim the heap when due."""
        if self.trim is None:
            return
        now = self.clock()
        if now < self.next:
            return
        self.trim(0)
        self.next = now + self.every_s
