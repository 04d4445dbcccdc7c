"""The worker's intake (agents/intake.py): fetches handed over whole, batches of at most its
limit, the fetcher held back while a full batch waits, and what a revocation clears."""

from __future__ import annotations

import asyncio
from typing import Any, NamedTuple

import pytest

from agents.align import TP
from agents.intake import Intake
from agents.worker import _count
from app import codec
from app.io import metrics
from app.pipeline import BatchResult


def _run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


class M(NamedTuple):
    """A fetched record as the intake reads it: its topic-partition and bytes (`n`: which)."""

    tp: TP
    value: bytes
    n: Any


def ms(*ns: Any, topic: str = "clicks", partition: int = 0, at: float | None = None) -> list[M]:
    """Records of one topic-partition, dated one second apart from `at` (default: `n` s)."""
    tp = TP(topic, partition)
    return [
        M(tp, codec.dumps({"ts": int(1000 * (n if at is None else at + i))}), n)
        for i, n in enumerate(ns)
    ]


def ns(batch: list[M]) -> list[Any]:
    return [m.n for m in batch]


def test_a_batch_is_what_waits_at_most_the_limit() -> None:
    async def scenario() -> list[list[Any]]:
        intake = Intake(limit=3)
        await intake.put(ms(1, 2))
        await intake.put(ms(3, 4))  # 2 waiting < 3: taken at once
        return [ns(await intake.take()), ns(await intake.take())]

    assert _run(scenario()) == [[1, 2, 3], [4]]


def test_take_waits_for_a_record() -> None:
    async def scenario() -> tuple[bool, list[Any]]:
        intake = Intake(limit=10)
        taking = asyncio.ensure_future(intake.take())
        await asyncio.sleep(0.01)
        early = taking.done()
        await intake.put(ms("a", at=0))
        return early, ns(await taking)

    assert _run(scenario()) == (False, ["a"])


def test_the_fetcher_waits_while_a_full_batch_waits() -> None:
    async def scenario() -> tuple[bool, bool, list[Any], list[Any]]:
        intake = Intake(limit=2)
        await intake.put(ms(1, 2))
        putting = asyncio.ensure_future(intake.put(ms(3)))
        await asyncio.sleep(0.01)
        held = not putting.done()
        first = await intake.take()
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        released = putting.done()
        return held, released, ns(first), ns(await intake.take())

    assert _run(scenario()) == (True, True, [1, 2], [3])


def test_clear_drops_what_waits_and_lets_the_fetcher_on() -> None:
    async def scenario() -> tuple[list[Any], list[Any]]:
        intake = Intake(limit=1)
        await intake.put(ms(1))
        putting = asyncio.ensure_future(intake.put(ms(2)))
        await asyncio.sleep(0.01)
        intake.clear()  # a revocation: [1] is not handled
        await asyncio.wait_for(putting, 1)
        return ns(list(intake.aligner.items())), ns(await intake.take())

    assert _run(scenario()) == ([2], [2])


def test_a_batch_time_is_the_batch_s_not_its_last_decision_s() -> None:
    before = metrics.BATCH_SECONDS._sum.get()
    result = BatchResult()
    result.decision_seconds.extend([0.001, 0.002])
    _count(result, redelivered=0, size=2, seconds=1.5)
    assert metrics.BATCH_SECONDS._sum.get() - before == pytest.approx(1.5)


def test_close_waits_for_the_batch_in_hand_and_then_nothing_is_taken() -> None:
    """A stop: `close` returns once the batch taken is done (not before), and what is still
    waiting is never taken (it comes again after the restart)."""

    async def run() -> tuple[bool, bool, bool, bool]:
        intake = Intake(limit=2)
        await intake.put(ms(1, 2, 3))
        assert ns(await intake.take()) == [1, 2]
        closing = asyncio.ensure_future(intake.close(5.0))
        await asyncio.sleep(0.01)
        early = closing.done()
        intake.done()
        settled = await closing
        taking = asyncio.ensure_future(intake.take())
        await intake.put(ms(3))
        await asyncio.sleep(0.01)
        taken = taking.done()
        taking.cancel()
        return early, settled, taken, await Intake(limit=1).close(0.0)

    early, settled, taken, idle = asyncio.run(run())
    assert not early and settled and not taken
    assert idle  # nothing in hand: closed at once


def test_close_gives_up_on_a_batch_that_is_not_done_in_time() -> None:
    async def run() -> bool:
        intake = Intake(limit=5)
        await intake.put(ms(1))
        await intake.take()
        return await intake.close(0.05)

    assert asyncio.run(run()) is False
