"""A partition's two input topics merged in event time (agents/align.py, agents/intake.py):
what may go and what waits, the fetcher never stuck behind records that wait, and, through the
engine, a backlog read topic by topic measuring the conversions that time order does."""

from __future__ import annotations

import asyncio
import collections
import time
from typing import Any

from agents.align import TP, Aligner
from agents.intake import Intake
from app import codec
from app.decode import EARLIEST, decode_event, event_time
from app.engine import DecisionEngine
from app.partitioning import partition_of
from app.sample import demo_catalog, generate
from schemas import FAMILY_OF_TYPE
from tests.unit.test_intake import ms, ns

CLICKS, ORDERS = TP("clicks", 0), TP("orders", 0)


def aligner(wait_s: float = 5.0) -> Aligner[str]:
    return Aligner(["clicks", "orders"], wait_s)


def fill(a: Aligner[str], tp: TP, *times: float) -> None:
    for t in times:
        a.add(tp, t, f"{tp.topic[0]}{t:g}")


def test_event_time_is_the_engines_and_earliest_when_there_is_none() -> None:
    assert event_time(b'{"ts": "2026-01-02T03:04:05.5Z", "x": 1}') == 1767323045.5
    assert event_time(b'{"ts": 1767323045500}') == 1767323045.5  # epoch ms, as decoded
    for bad in (b"not json", b"[1]", b'{"no": "ts"}', b'{"ts": "yesterday"}', None):
        assert event_time(bad) == EARLIEST


def test_a_partitions_topics_go_merged_in_event_time_clicks_first_on_a_tie() -> None:
    a = aligner()
    a.progress({CLICKS: True, ORDERS: True})
    fill(a, ORDERS, 3, 7, 20)  # a fetch of orders spans more event time
    fill(a, CLICKS, 1, 2, 3, 4, 5)
    # orders after 5 may come from the clickstream still behind: they wait
    a.progress({CLICKS: False, ORDERS: True})
    assert a.take(100, 0.0) == ["c1", "c2", "c3", "o3", "c4", "c5"]
    assert a.take(100, 0.0) == [] and a.size == 2
    fill(a, CLICKS, 6, 8)
    assert a.take(100, 0.0) == ["c6", "o7", "c8"]
    a.progress({CLICKS: True, ORDERS: True})  # read to the end: nothing earlier can come
    assert a.take(100, 0.0) == ["o20"] and a.size == 0


def test_partitions_are_merged_apart_and_none_waits_for_another() -> None:
    a = aligner()
    other = TP("clicks", 1)
    a.progress({CLICKS: False, ORDERS: False, other: True, TP("orders", 1): True})
    fill(a, CLICKS, 1)
    fill(a, other, 50, 60)
    assert a.take(100, 0.0) == ["c50", "c60"]  # partition 0 waits for its orders
    assert a.take(1, 0.0) == []


def test_a_topic_partition_behind_holds_its_partition_at_most_wait_s() -> None:
    a = aligner(wait_s=2.0)
    a.progress({CLICKS: True, ORDERS: False})
    fill(a, CLICKS, 1, 2)
    assert a.take(10, 100.0) == [] and a.wake_in(100.5) == 1.5
    assert a.take(10, 102.0) == ["c1", "c2"] and a.timeouts == 1
    fill(a, CLICKS, 3)
    assert a.take(10, 102.1) == ["c3"]  # still gone: no new wait until it brings a record
    fill(a, ORDERS, 9)
    fill(a, CLICKS, 4)
    assert a.take(10, 103.0) == ["c4", "o9"] and a.wake_in(103.0) is None
    fill(a, CLICKS, 10)
    assert a.take(10, 104.0) == []  # its next empty spell holds the partition again
    assert a.wake_in(104.0) == 2.0 and a.timeouts == 1


def test_a_topic_partition_not_assigned_holds_nothing() -> None:
    a = aligner()
    a.progress({CLICKS: True})  # (orders partition 0 is not this worker's)
    fill(a, ORDERS, 1)  # (fetched before a rebalance)
    fill(a, CLICKS, 2, 3)
    assert a.take(10, 0.0) == ["o1", "c2", "c3"]


def test_a_wait_ends_when_its_topic_partition_is_no_longer_assigned() -> None:
    """No wait of a topic-partition given away runs on: given back, it waits afresh."""
    a = aligner(wait_s=2.0)
    a.progress({CLICKS: True, ORDERS: False})
    fill(a, CLICKS, 1)
    assert a.take(10, 100.0) == [] and a.wake_in(100.0) == 2.0
    a.progress({CLICKS: True})  # a rebalance took orders 0 away
    assert a.take(10, 101.0) == ["c1"] and a.wake_in(101.0) is None
    a.progress({CLICKS: True, ORDERS: False})  # and gave it back, behind
    fill(a, CLICKS, 2)
    assert a.take(10, 150.0) == [] and a.timeouts == 0
    assert a.take(10, 152.0) == ["c2"] and a.timeouts == 1 and a.gone == [ORDERS]


def test_the_fetcher_goes_on_while_everything_waiting_is_held_back() -> None:
    """A full intake whose records all wait for a topic-partition behind must not stop the
    fetcher that would bring its records; a topic-partition far ahead is paused meanwhile."""

    class Flow:
        def __init__(self) -> None:
            self.paused: set[Any] = set()

        def pause_partitions(self, tps: Any) -> None:
            self.paused |= set(tps)

        def resume_partitions(self, tps: Any) -> None:
            self.paused -= set(tps)

    async def scenario() -> tuple[list[Any], set[Any], set[Any], list[Any]]:
        intake = Intake(limit=2, topics=["clicks", "orders"])
        intake.flow = flow = Flow()
        behind = {CLICKS: False, ORDERS: True}
        await intake.put(ms(*range(100, 108), topic="orders"), behind)
        taking = asyncio.ensure_future(intake.take())
        await asyncio.sleep(0.01)
        assert not taking.done()  # the orders wait for the clicks
        paused = set(flow.paused)  # 8 waiting >= 4 batches of 2
        await asyncio.wait_for(intake.put(ms(1, 2, 3)), 1)  # not held at the door
        first = ns(await taking)
        rest: list[Any] = []

        async def take_the_rest() -> None:
            while len(rest) < 11:
                rest.extend(ns(await intake.take()))

        taker = asyncio.ensure_future(take_the_rest())
        await asyncio.wait_for(intake.put(ms(200, 201), {CLICKS: True, ORDERS: True}), 1)
        await asyncio.wait_for(taker, 1)
        after = set(flow.paused)
        await intake.put(ms(*range(300, 308), topic="orders"), behind)
        again = set(flow.paused)
        intake.clear()  # a revocation: a partition kept stays paused at Faust unless resumed
        return first, paused, after, rest, again, flow.paused

    first, paused, after, rest, again, cleared = asyncio.run(scenario())
    assert first == [1, 2] and paused == {ORDERS} and after == set()
    assert rest == [3, *range(100, 108), 200, 201]
    assert again == {ORDERS} and cleared == set()


def test_the_intake_wakes_when_a_wait_runs_out() -> None:
    async def scenario() -> tuple[bool, list[Any]]:
        intake = Intake(limit=10, topics=["clicks", "orders"], wait_s=0.2)
        await intake.put(ms(1, 2), {CLICKS: True, ORDERS: False})
        taking = asyncio.ensure_future(intake.take())
        await asyncio.sleep(0.05)
        early = taking.done()
        return early, ns(await asyncio.wait_for(taking, 2))  # no record comes: the timer

    assert asyncio.run(scenario()) == (False, [1, 2])


def _fed(order: list[tuple[dict[str, Any], int]]) -> tuple[int, int]:
    """Conversions and windows left open behind the watermark, the engine fed `order`."""
    engine = DecisionEngine(demo_catalog(), None)
    converted = 0
    for event, partition in order:
        engine.process_event(decode_event(codec.dumps(event), None, 1 << 20), partition)
        converted += sum(o.converted for o in engine.take_outcomes())
    watermark = engine.models.watermark
    behind = sum(w[3] < watermark for s in engine.customers.values() for w in s.windows)
    return converted, behind


def test_a_backlog_read_a_fetch_of_each_topic_at_a_time_converts_as_time_order() -> None:
    """The worker under a backlog: each topic-partition's records come a fetch at a time, round
    robin, so the sparse orders run far ahead in event time. Taken through the aligner, the
    engine measures the conversions it does in time order and leaves no window open behind
    the watermark (fed as fetched, it measured 83 conversions where time order has 618, and
    left 9,169 windows open behind it: 3,000 customers)."""
    events = list(generate(1200, seed=42))
    n = 6
    sources: dict[TP, collections.deque[dict[str, Any]]] = collections.defaultdict(
        collections.deque
    )
    for e in events:
        tp = TP(FAMILY_OF_TYPE[e["type"]], partition_of(e["customer_id"], n))
        sources[tp].append(e)
    for p in range(n):  # every topic-partition assigned, none read yet
        for topic in ("clickstream", "orders"):
            sources.setdefault(TP(topic, p), collections.deque())
    a: Aligner[tuple[dict[str, Any], int]] = Aligner(["clickstream", "orders"], 5.0)
    order: list[tuple[dict[str, Any], int]] = []
    while any(sources.values()) or a.size:
        for tp, source in sources.items():  # one fetch of 64 records of each
            for _ in range(min(64, len(source))):
                e = source.popleft()
                a.add(tp, event_time(codec.dumps(e)), (e, tp.partition))
        a.progress({tp: not source for tp, source in sources.items()})
        while batch := a.take(500, 0.0):
            order += batch
    assert len(order) == len(events)
    timed = [(e, partition_of(e["customer_id"], n)) for e in events]
    in_time_order = _fed(timed)
    aligned = _fed(order)
    assert in_time_order[0] > 100
    assert aligned[0] >= 0.9 * in_time_order[0] and aligned[1] == in_time_order[1] == 0


def test_an_event_dated_past_the_workers_clock_holds_nothing_back() -> None:
    """A producer's bad clock: the event is a dead letter (future_timestamp) and moves no
    clock, so it goes at once, not after the other topic is read to its end."""

    async def scenario() -> list[Any]:
        intake = Intake(limit=10, topics=["clicks", "orders"], max_future_s=300)
        ahead = time.time() + 3600
        await intake.put([*ms("bad", at=ahead), *ms(1, 2)], {CLICKS: False, ORDERS: False})
        await intake.put(ms(1.5, topic="orders"))
        return ns(await asyncio.wait_for(intake.take(), 1))

    assert asyncio.run(scenario()) == ["bad", 1, 1.5]


def test_a_partition_waiting_for_its_records_does_not_wait_for_the_others_backlog() -> None:
    """Partition 1 has a backlog to take; partition 0 waits for clicks still in Kafka. The
    fetcher must bring them now, not once partition 1's backlog is taken (it would wait
    TACT_ALIGN_WAIT_S, then let partition 0's orders go ahead of its clicks)."""

    async def scenario() -> tuple[list[Any], list[Any]]:
        intake = Intake(limit=2, topics=["clicks", "orders"], wait_s=60)
        others = {TP("clicks", 1): True, TP("orders", 1): True}
        await intake.put(
            [*ms(100, topic="orders"), *ms(*range(10, 20), partition=1)],
            {CLICKS: False, ORDERS: False, **others},
        )
        first = ns(await intake.take())  # partition 1's; partition 0 waits for its clicks
        await asyncio.wait_for(intake.put(ms(1, 2)), 1)  # 9 wait > 2: let in all the same
        taken: list[Any] = []
        while 1 not in taken:
            taken += ns(await asyncio.wait_for(intake.take(), 1))
        return first, taken

    first, taken = asyncio.run(scenario())
    assert first == [10, 11] and 1 in taken and 100 not in taken
