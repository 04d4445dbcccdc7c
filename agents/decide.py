"""The decision agent: clickstream and orders in (raw bytes), Actions and dead letters out.

The decision task only moves records between Faust's consumer and DecisionWorker
(agents/worker.py): it takes the records fetched (agents/intake.py: a fetch at a time, not
through Faust's per-record streams), hands them over, and acknowledges them once the worker
has checkpointed, so Faust never commits an offset whose effects are not saved. A batch closes
a bounded number of attribution windows (app/pipeline.py); when it leaves ended ones behind,
the next batch starts at once, with the records that may go or none.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Awaitable
from typing import Any, cast

import faust
from aiokafka.partitioner import DefaultPartitioner
from faust.types import Message

from agents.gcpacing import GcPacer
from agents.heap import HeapTrimmer
from agents.intake import Intake, current, use_batches
from agents.worker import BatchFailed, DecisionWorker, OutRecord, Sender
from app.pipeline import Record

log = logging.getLogger(__name__)

EXIT_BATCH_FAILED = 75  # EX_TEMPFAIL: restart me (nothing unsaved was acknowledged)
EXIT_TASK = 70  # EX_SOFTWARE: the decision task ended while the worker was not stopping


def _record(message: Message) -> Record:
    return Record(
        topic=message.topic,
        partition=message.partition,
        offset=message.offset,
        key=message.key,
        value=message.value,
        timestamp_ms=int(message.timestamp * 1000) if message.timestamp else None,
    )


def producer_sender(app: faust.App) -> Sender:
    """A Sender on the Faust app's producer: a batch's records go out in batches of the
    producer's size, one per topic-partition at a time (`create_batch`, `send_batch`), to the
    partition aiokafka's `send` would choose (Kafka's default partitioner: murmur2 of the
    key; a keyless dead letter, a partition with a leader at random), each topic-partition's
    in their order. A record at a time (`send`) took 2-3 times longer: a future, a metadata
    wait and Faust's wrapper each."""

    async def send(records: list[OutRecord]) -> list[Awaitable[Any]]:
        # (aiokafka's producer under Faust's: Faust's send takes one record at a time)
        producer = app.producer._ensure_producer()  # type: ignore[attr-defined]
        return await send_batched(producer, records)

    return send


async def send_batched(producer: Any, records: list[OutRecord]) -> list[Awaitable[Any]]:
    """`records` handed to aiokafka `producer` in batches per topic-partition; their
    deliveries."""
    partitions: dict[str, tuple[list[int], list[int]]] = {}  # topic -> all, with a leader
    batches: dict[tuple[str, int], Any] = {}
    full: set[tuple[str, int]] = set()  # topic-partitions that sent a full batch already
    deliveries: list[Awaitable[Any]] = []
    for topic, key, value, headers in records:
        known = partitions.get(topic)
        if known is None:
            every = sorted(await producer.partitions_for(topic))
            led = sorted(producer.client.cluster.available_partitions_for_topic(topic) or ())
            known = partitions[topic] = (every, led)
        to = (topic, _PARTITIONER(key, *known))
        batch = batches.get(to)
        if batch is None:
            batch = batches[to] = producer.create_batch()
        headers = headers or []
        if batch.append(key=key, value=value, timestamp=None, headers=headers) is None:
            deliveries.append(await producer.send_batch(batch, topic, partition=to[1]))
            full.add(to)
            batch = batches[to] = producer.create_batch()
            # (an empty batch takes any record; one too big for the broker fails there)
            batch.append(key=key, value=value, timestamp=None, headers=headers)
    # The rest, first those of topic-partitions that sent none yet: `send_batch` waits while
    # a batch of its topic-partition is still queued, and they need not wait behind that.
    for (topic, partition), batch in sorted(batches.items(), key=lambda kv: kv[0] in full):
        deliveries.append(await producer.send_batch(batch, topic, partition=partition))
    return deliveries


_PARTITIONER = DefaultPartitioner()


def attach(app: faust.App, worker: DecisionWorker) -> None:
    """Register the decision agent and the rebalance hooks on `app`."""
    settings = worker.settings
    channel = app.topic(
        *settings.input_topics,
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
    )
    inputs = set(settings.input_topics)
    pacer = GcPacer(settings.gc_full_every_s)
    trimmer = HeapTrimmer(settings.heap_trim_every_s)
    intake = Intake(
        settings.batch_max,
        list(settings.input_topics),
        settings.align_wait_s,
        settings.max_future_skew_s,
    )
    use_batches(app, intake)
    app.topics.add(channel)  # (subscribed, its records acknowledged, as an agent's)

    async def decide() -> None:
        try:
            await _decide()
        except BaseException as exc:
            if app.should_stop:
                raise
            # Not stopping, yet the task ends (even cancelled from inside): a worker that
            # holds its partitions and handles nothing must not live on. Exit for the
            # supervisor; nothing unsaved was acknowledged.
            log.critical("the decision task ended: %r; exiting with status %d", exc, EXIT_TASK)
            logging.shutdown()
            os._exit(EXIT_TASK)

    async def _decide() -> None:
        consumer = app.consumer
        behind = False
        while True:
            # Windows left ended by the last batch's bound on closings: the next batch now,
            # with whatever records may go (perhaps none), not when records come.
            was_behind, behind = behind, False
            messages = current(app, await intake.take(wait=not was_behind))
            try:
                if messages or was_behind:
                    await _handle(consumer, messages)
                # (a worker handling nothing until Kafka assigns it partitions again waits)
                behind = worker.owes_closings()
            finally:
                intake.done()

    async def _handle(consumer: Any, messages: list[Message]) -> None:
        try:
            done = await worker.handle_until_done([_record(m) for m in messages])
        except BatchFailed as exc:
            # Exit for the supervisor to restart; the batch was never acknowledged.
            log.critical("%s; exiting with status %d", exc, EXIT_BATCH_FAILED)
            logging.shutdown()
            os._exit(EXIT_BATCH_FAILED)
        if done:  # (a batch not done came with a rebalance: Kafka seeks back to the
            # committed offsets before any later record of its partitions is acked)
            for message in messages:
                consumer.ack(message)
        pacer.after_batch()
        trimmer.after_batch()

    # A stop lets the batch in hand finish and be acknowledged before Faust stops the
    # fetcher, commits for the last time and closes the producer (its decision task is
    # cancelled only after all that): so a stop redelivers nothing that was checkpointed,
    # and no batch is cut off halfway with the producer gone. Records fetched and not taken
    # come again after the restart.
    stop_consumer = cast(Any, app)._stop_consumer

    async def settle_then_stop_consumer() -> None:
        wait = settings.stop_timeout_s / 3
        if not await intake.close(wait):
            log.warning(
                "stopping: the batch in hand was not done within %.1f s; unless it is done "
                "before Faust's last commit, it comes again after the restart",
                wait,
            )
        await stop_consumer()

    cast(Any, app)._stop_consumer = settle_then_stop_consumer

    async def on_assigned(sender: Any, assigned: Any, **kwargs: Any) -> None:
        mine = sorted(f"{tp.topic}:{tp.partition}" for tp in assigned if tp.topic in inputs)
        log.info("assigned %d input partitions: %s", len(mine), ", ".join(mine))
        worker.assign(tp.partition for tp in assigned if tp.topic in inputs)
        await worker.claim()  # now: a zombie's checkpoint is refused from this moment

    async def on_revoked(sender: Any, *args: Any, **kwargs: Any) -> None:
        # A batch in flight now is not acknowledged (the generation moves) and its checkpoint
        # is refused if the partitions' next owner has claimed them first. Records fetched
        # and not taken yet come again after Kafka's seek to the committed offsets.
        intake.clear()
        worker.forget()

    app.task(decide)
    app.on_partitions_assigned.connect(cast(Any, on_assigned))
    app.on_partitions_revoked.connect(cast(Any, on_revoked))
