"""The worker's pacing of Python's garbage collector (agents/gcpacing.py)."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from agents.gcpacing import YOUNG, GcPacer


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(autouse=True)
def unfrozen() -> Iterator[None]:
    gc.unfreeze()
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


def cycle() -> None:
    """Garbage only the cyclic collector can free."""
    a: list[object] = []
    a.append(a)


def test_survivors_are_frozen_at_most_once_per_interval_and_everything_is_collected_when_due() -> (
    None
):
    clock = Clock()
    pacer = GcPacer(full_every_s=600.0, freeze_every_s=1.0, clock=clock)
    pacer.after_batch()  # the first batch: one full collection of what starting up left
    assert pacer.full_collections == 1
    frozen = gc.get_freeze_count()
    assert frozen > 0

    kept = [[i] for i in range(1000)]  # survivors made after the freeze
    clock.now += 0.5
    pacer.after_batch()
    assert gc.get_freeze_count() == frozen  # too soon: nothing moves
    clock.now += 0.6
    pacer.after_batch()
    assert gc.get_freeze_count() >= frozen + len(kept)
    assert pacer.full_collections == 1

    for _ in range(100):
        cycle()
    gc.freeze()  # garbage in cycles that was frozen stays until the next full collection
    with_garbage = gc.get_freeze_count()
    clock.now += 600.0
    pacer.after_batch()
    assert pacer.full_collections == 2
    assert gc.get_freeze_count() < with_garbage  # unfrozen, collected, frozen again
    assert len(kept) == 1000


def test_the_young_generation_is_collected_after_many_allocations_not_hundreds() -> None:
    GcPacer(full_every_s=600.0)
    assert gc.get_threshold()[0] == YOUNG


def test_zero_leaves_pythons_collector_alone() -> None:
    clock = Clock()
    thresholds = gc.get_threshold()
    pacer = GcPacer(full_every_s=0.0, clock=clock)
    assert gc.get_threshold() == thresholds
    for _ in range(3):
        pacer.after_batch()
        clock.now += 700.0
    assert gc.get_freeze_count() == 0
    assert pacer.full_collections == 0
