"""Records handed over a fetch at a time, not one by one through Faust's streams.

Faust delivers each record through its conductor, a channel queue and a stream: an Event,
two awaits and a task per record, about half of what a worker spent per event beside the
decision itself (a profile of `benchmarks/worker_throughput.py`). The worker wants batches
anyway, so `BatchConsumer` keeps Faust's consumer (the group, rebalances, the commit of
acknowledged offsets) and replaces only its drain loop: each fetch from aiokafka's buffers
goes whole into an `Intake`, and the decision task takes what is waiting there, at most
`batch_max` records, whenever it is ready for more. A batch is therefore what came while
the last one was handled: one record at a quiet moment (no wait before it starts), full
batches under a backlog. Within each input partition, the intake hands records on merged in
event time across the clickstream and orders topics (agents/align.py): under a backlog, a fetch
of each spans very different stretches of event time, and the engine must fold them in the
order they happened.

As Faust's streams do, records fetched before a rebalance are not handled after it: the
intake is cleared at a revocation, and a record of an older consumer generation is dropped
when taken (Kafka seeks back to the committed offsets at the assignment, so they come again).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Mapping, MutableMapping, Sequence, Set
from functools import partial
from typing import Any, Protocol, cast

import faust
from faust.transport.drivers.aiokafka import Consumer
from faust.types import TP, Message

from agents.align import Aligner
from app.decode import EARLIEST, event_time
from app.io import metrics
from app.pipeline import DEFAULT_MAX_FUTURE_S

log = logging.getLogger(__name__)

ALIGN_WAIT_S = 5.0  # (TACT_ALIGN_WAIT_S)
_PAUSE_AT = 4  # a topic-partition with this many batches waiting is not fetched meanwhile


# which assigned topic-partitions are caught up; or how to know it when asked; None: unknown
CaughtUp = Mapping[Any, bool] | Callable[[], Mapping[Any, bool] | None] | None


class Flow(Protocol):
    """What the intake asks of the consumer: stop and restart fetching topic-partitions."""

    def pause_partitions(self, tps: Iterable[Any]) -> None: ...

    def resume_partitions(self, tps: Iterable[Any]) -> None: ...


def _faust(tps: Iterable[Any]) -> set[TP]:
    """Faust's own TPs (a fetch's records carry aiokafka's, which Faust's active partitions
    refuse: its `resume_partitions` adds what it is given as it is)."""
    return {TP(tp.topic, tp.partition) for tp in tps}


class Intake:
    """Fetched records waiting for the decision task, handed on per input partition in event
    time (agents/align.py). The fetcher waits while `limit` wait, unless a partition is held
    back for want of a topic-partition's records (then it brings them, however much else
    waits: a partition must not wait for the others' backlog); a topic-partition with
    `_PAUSE_AT` times `limit` waiting is paused at the consumer (`flow`) until it has fewer.
    The task says when it is `done` with a batch it took; once the intake is `closed` (the
    worker stopping), nothing more is taken."""

    def __init__(
        self,
        limit: int,
        topics: Sequence[str] = (),
        wait_s: float = ALIGN_WAIT_S,
        max_future_s: float = DEFAULT_MAX_FUTURE_S,
    ) -> None:
        self.limit = limit
        self.max_future_s = max_future_s
        self.aligner: Aligner[Any] = Aligner(topics, wait_s)
        self.flow: Flow | None = None
        self.paused: set[Any] = set()
        self.wanting = False  # a partition waits for a topic-partition's records
        self.arrived = asyncio.Event()
        self.room = asyncio.Event()
        self.room.set()
        self.idle = asyncio.Event()  # no batch taken and not yet done
        self.idle.set()
        self.closed = False

    async def put(self, messages: list[Any], caught_up: CaughtUp = None) -> None:
        """Fetched records (each with `tp` and `value`, in offset order per topic-partition)
        and, if known, which assigned input topic-partitions are caught up after them (or
        how to know, once the records are let in)."""
        while self.aligner.size >= self.limit and not self.wanting:
            self.room.clear()
            await self.room.wait()
        add = self.aligner.add
        # An event dated past the worker's clock is a dead letter (future_timestamp): it moves
        # no clock, so it sorts first (else a bad clock would hold its topic back until the
        # other was read to its end).
        horizon = time.time() + self.max_future_s
        for message in messages:
            t = event_time(message.value)
            add(message.tp, EARLIEST if t > horizon else t, message)
        if callable(caught_up):
            caught_up = caught_up()
        if caught_up is not None:
            self.aligner.progress(caught_up)
        self.wanting = self.aligner.wanting(time.monotonic())
        self.arrived.set()
        full = self.aligner.longer_than(self.limit * _PAUSE_AT) - self.paused
        if full and self.flow is not None:
            self.paused |= full
            self.flow.pause_partitions(_faust(full))

    def progress(self, caught_up: Mapping[Any, bool] | None) -> None:
        """Which assigned input topic-partitions are caught up (a fetch that brought nothing;
        None: not known now)."""
        if caught_up is not None and self.aligner.progress(caught_up):
            self.arrived.set()

    async def take(self, wait: bool = True) -> list[Any]:
        """The records that may go (at most `limit`), once there is one (never once closed);
        without `wait`, at once, perhaps none (but never once closed)."""
        aligner = self.aligner
        while True:
            if not self.closed:
                timeouts = aligner.timeouts
                batch = aligner.take(self.limit, time.monotonic())
                if aligner.timeouts > timeouts:
                    self._timed_out(aligner.timeouts - timeouts)
                self.wanting = aligner.wanting(time.monotonic())
                if self.wanting:  # (the fetcher brings what a partition waits for)
                    self.room.set()
                if batch or not wait:
                    break
            self.arrived.clear()
            wake = None if self.closed else aligner.wake_in(time.monotonic())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.arrived.wait(), wake)
        if aligner.size < self.limit:
            self.room.set()
        if self.paused:  # (resumed at half the pause's length: not after every batch)
            emptier = self.paused - aligner.longer_than(self.limit * _PAUSE_AT // 2)
            if emptier:
                self.paused -= emptier
                self._resume(emptier)
        self.idle.clear()
        return batch

    def _timed_out(self, n: int) -> None:
        metrics.ALIGN_TIMEOUTS.inc(n)
        gone = ", ".join(f"{tp.topic}:{tp.partition}" for tp in self.aligner.gone)
        self.aligner.gone.clear()
        log.warning(
            "%s: records in Kafka and none fetched for %g s (TACT_ALIGN_WAIT_S); the other "
            "topic of the partition goes on without waiting for them, out of event-time order "
            "across the two until they come",
            gone,
            self.aligner.wait_s,
        )

    def _resume(self, tps: set[Any]) -> None:
        if tps and self.flow is not None:
            self.flow.resume_partitions(_faust(tps))

    def done(self) -> None:
        """The batch last taken is handled (acknowledged, or not to be)."""
        self.idle.set()

    async def close(self, timeout: float) -> bool:
        """Take nothing more; wait for the batch in hand to be done, at most `timeout`
        seconds. Whether it was."""
        self.closed = True
        if self.idle.is_set():
            return True
        try:
            await asyncio.wait_for(self.idle.wait(), timeout)
        except TimeoutError:
            return False
        return True

    def clear(self) -> None:
        """A revocation: drop what waits (it comes again after Kafka's seek) and resume what
        was paused."""
        self.aligner.clear()
        paused, self.paused = self.paused, set()
        self._resume(paused)
        self.wanting = False
        self.room.set()


class BatchConsumer(Consumer):
    """Faust's aiokafka consumer, each fetch handed to `intake` whole (see the module)."""

    intake: Intake | None = None  # set by `attach` (agents/decide.py) before the app starts

    async def _drain_messages(self, fetcher: Any) -> None:  # pragma: no cover (a real broker)
        intake = self.intake
        if intake is None:
            raise RuntimeError("BatchConsumer started without an intake")
        consumer_should_stop = self._stopped.is_set
        fetcher_should_stop = fetcher._stopped.is_set
        read_offset = self._read_offset
        acks_enabled_for = self.app.topics.acks_enabled_for
        inbound = self.app.monitor.stream_inbound_time
        intake.flow = self
        try:
            while not (consumer_should_stop() or fetcher_should_stop()):
                await self.sleep(0)
                if self.should_stop:
                    break
                records, active = await self._wait_next_records(1.0)
                now = time.monotonic()
                for tp in intake.paused:  # (held on purpose: Faust must not call them stalled)
                    inbound[tp] = now
                if not records or self.should_stop:
                    intake.progress(self._caught_up(intake.aligner.rank))
                    continue
                if not self.flow_active:  # (as Faust's getmany: back to the committed offsets)
                    try:
                        await self.perform_seek()
                    except Exception as exc:
                        self.log.warning("exception performing seek when flow not active %r", exc)
                    continue
                messages = await self._messages(records, active, read_offset, acks_enabled_for)
                if not messages:
                    continue
                for tp in {m.tp for m in messages}:
                    inbound[tp] = now  # (what Faust's streams record: its stall warnings)
                caught_up = partial(self._caught_up, intake.aligner.rank)
                await self.wait_first(intake.put(messages, caught_up), self.suspend_flow.wait())
        except self.consumer_stopped_errors:
            if self.transport.app.should_stop:
                self.log.info("Broker stopped consumer, shutting down...")
                return
            raise
        except asyncio.CancelledError:
            if self.transport.app.should_stop:
                self.log.info("Consumer shutting down for user cancel.")
                return
            raise
        except Exception as exc:
            self.log.exception("Drain messages raised: %r", exc)
            raise

    def _caught_up(self, topics: Mapping[str, int]) -> dict[TP, bool] | None:  # pragma: no cover
        """Each assigned topic-partition of `topics`: whether it is read to the highwater of
        its last fetch (nothing more in Kafka as of then). Read from aiokafka's own state, as
        Faust's `highwater` does: `position` would wait for a partition being reset."""
        consumer = cast(Any, self)._thread._consumer
        assignment = None if consumer is None else consumer._subscription.subscription
        assignment = None if assignment is None else assignment.assignment
        if assignment is None:  # (between generations: not known, not "none assigned")
            return None
        caught_up = {}
        for tp in assignment.tps:
            if tp.topic in topics:
                state = assignment.state_value(tp)
                # each read once: the consumer's thread may reset the position meanwhile
                position, highwater = state._position, state.highwater
                caught_up[TP(tp.topic, tp.partition)] = (
                    position is not None and highwater is not None and position >= highwater
                )
        return caught_up

    async def _messages(
        self,
        records: Any,
        active: Set[TP] | None,
        read_offset: MutableMapping[TP, int | None],
        acks_enabled_for: Any,
    ) -> list[Message]:
        """The fetched records as Faust's messages, without those read already, in the
        order Faust's own getmany gives (round robin over topics and partitions: one
        partition's backlog does not go all before another's records, nor a topic's before
        the other's); gaps in offsets are noted for Faust's commits, as its drain loop does."""
        generation = self.app.consumer_generation_id
        to_message = self._to_message
        buffered = self._buffered_partitions
        last = {
            tp: read_offset.get(tp)
            for tp in records
            if active is None or tp in active or tp in buffered
        }
        messages: list[Message] = []
        for tp, record in self.scheduler.iterate(records):
            if tp not in last:
                continue
            offset, previous = record.offset, last[tp]
            if previous is not None and offset < previous:
                continue
            if previous and offset - previous > 1 and acks_enabled_for(tp.topic):
                await self._add_gap(tp, previous + 1, offset)
            messages.append(to_message(tp, record))
            last[tp] = offset
        for tp, offset in last.items():
            read_offset[tp] = offset
            self.app.monitor.track_tp_end_offset(tp, self.highwater(tp))
        if self.app.consumer_generation_id != generation:
            return []  # a rebalance came meanwhile
        return messages


def use_batches(app: faust.App, intake: Intake) -> None:
    """Make `app` consume through a BatchConsumer feeding `intake` (before it starts)."""
    if cast(Any, app)._consumer is not None:  # (Faust's own drain loop would feed nobody)
        raise RuntimeError("use_batches must come before anything makes the app's consumer")
    transport = cast(Any, app.transport)
    transport.Consumer = type("BatchConsumer", (BatchConsumer,), {"intake": intake})


def current(app: faust.App, messages: list[Message]) -> list[Message]:
    """The records of `messages` fetched in the consumer's current generation while its flow
    is active (records of an earlier one come again after Kafka's seek)."""
    if not app.flow_control.is_active():
        return []
    generation = app.consumer_generation_id
    return [m for m in messages if m.generation_id == generation]
