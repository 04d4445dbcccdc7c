"""Records handed over a fetch at a time, not one by one through Faust's streams.

Faust delivers each record through its conductor, a channel queue and a stream: an Event,
two awaits and a task per record, about half of what a worker spent per event beside the
decision itself (a profile of `benchmarks/worker_throughput.py`). The worker wants batches
anyway, so `BatchConsumer` keeps Faust's consumer (the group, rebalances, the commit of
acknowledged offsets) and replaces only its drain loop: each fetch from aiokafka's buffers
goes whole into an `Intake`, and the decision task takes what is waiting there, at most
`batch_max` records, whenever it is ready for more. A batch is therefore what came while
the last one was handled: one record at a quiet moment (no wait before it starts), full
batches under a backlog.

As Faust's streams do, records fetched before a rebalance are not handled after it: the
intake is cleared at a revocation, and a record of an older consumer generation is dropped
when taken (Kafka seeks back to the committed offsets at the assignment, so they come again).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import MutableMapping, Set
from typing import Any, cast

import faust
from faust.transport.drivers.aiokafka import Consumer
from faust.types import TP, Message


class Intake:
    """Fetched records waiting for the decision task: the fetcher waits while `limit` wait.
    The task says when it is `done` with a batch it took; once the intake is `closed` (the
    worker stopping), nothing more is taken."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.waiting: list[Message] = []
        self.arrived = asyncio.Event()
        self.room = asyncio.Event()
        self.room.set()
        self.idle = asyncio.Event()  # no batch taken and not yet done
        self.idle.set()
        self.closed = False

    async def put(self, messages: list[Message]) -> None:
        while len(self.waiting) >= self.limit:
            self.room.clear()
            await self.room.wait()
        self.waiting.extend(messages)
        self.arrived.set()

    async def take(self) -> list[Message]:
        """The records waiting (at most `limit`), once there is one (never once closed)."""
        while not self.waiting or self.closed:
            self.arrived.clear()
            await self.arrived.wait()
        batch, self.waiting = self.waiting[: self.limit], self.waiting[self.limit :]
        if len(self.waiting) < self.limit:
            self.room.set()
        self.idle.clear()
        return batch

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
        self.waiting = []
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
        try:
            while not (consumer_should_stop() or fetcher_should_stop()):
                await self.sleep(0)
                if self.should_stop:
                    break
                records, active = await self._wait_next_records(1.0)
                if not records or self.should_stop:
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
                now = time.monotonic()
                for tp in {m.tp for m in messages}:
                    inbound[tp] = now  # (what Faust's streams record: its stall warnings)
                await self.wait_first(intake.put(messages), self.suspend_flow.wait())
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
