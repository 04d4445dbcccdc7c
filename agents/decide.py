"""The decision agent: clickstream and orders in, Actions and dead letters out.

Per batch: skip records already in the checkpoint, decode, load the states of customers not
in memory, decide (pure core), send actions and dead letters and wait until the broker has
them, checkpoint states and offsets in one atomic write, and only then acknowledge the
records so Faust may commit their offsets. A crash anywhere in between loses nothing: the
records are redelivered and re-decided from the checkpointed state, giving the same actions.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Sequence
from typing import Any, cast

import faust

from app import codec
from app.io import metrics
from app.pipeline import BatchPipeline, BatchResult, Record
from app.settings import Settings
from app.store import StateStore

log = logging.getLogger(__name__)


class DecisionWorker:
    """The state of one worker process: the engine's cache, the checkpoint, the producer."""

    def __init__(
        self, app: faust.App, settings: Settings, store: StateStore, pipeline: BatchPipeline
    ) -> None:
        self.app = app
        self.settings = settings
        self.store = store
        self.pipeline = pipeline
        self.committed: dict[str, int] | None = None
        self.generation = 0

    async def on_partitions_assigned(self, sender: Any, assigned: Any, **kwargs: Any) -> None:
        inputs = set(self.settings.input_topics)
        mine = sorted(f"{tp.topic}:{tp.partition}" for tp in assigned if tp.topic in inputs)
        log.info("assigned %d input partitions: %s", len(mine), ", ".join(mine))

    async def on_partitions_revoked(self, sender: Any, *args: Any, **kwargs: Any) -> None:
        """Partitions may move to another worker: forget cached state; reload on next use."""
        self.generation += 1
        self.committed = None
        self.pipeline.engine.forget()

    async def handle(self, records: Sequence[Record]) -> bool:
        """Process one batch; True when it was checkpointed and may be acknowledged."""
        started = time.perf_counter()
        generation = self.generation
        if self.committed is None:
            self.committed = await self.store.load_offsets()
        prepared = self.pipeline.prepare(records, self.committed)
        engine = self.pipeline.engine
        missing = [cid for cid in prepared.customer_ids() if not engine.knows(cid)]
        engine.restore(await self.store.load_customers(missing))
        if generation != self.generation:
            return False
        result = self.pipeline.decide(prepared)
        await asyncio.gather(*await self._send(result))
        if generation != self.generation:
            return False
        await self.store.commit(engine.dump(result.touched), prepared.offsets)
        self.committed.update(prepared.offsets)
        self._count(result, prepared.redelivered, len(records), time.perf_counter() - started)
        return True

    async def _send(self, result: BatchResult) -> list[Awaitable[Any]]:
        producer = self.app.producer
        pending: list[Awaitable[Any]] = []
        for action in result.actions:
            pending.append(
                await producer.send(
                    self.settings.topic_actions,
                    action.customer_id.encode("utf-8"),
                    codec.dumps(action.model_dump(mode="json")),
                    None,
                    None,
                    None,
                )
            )
        for letter in result.dead_letters:
            record = letter.record
            log.warning(
                "dead letter: %s (%s)",
                letter.reason,
                letter.detail,
                extra={
                    "topic": record.topic,
                    "partition": record.partition,
                    "offset": record.offset,
                    "reason": letter.reason,
                },
            )
            pending.append(
                await producer.send(
                    self.settings.topic_dead_letters,
                    record.key,
                    record.value,
                    None,
                    None,
                    letter.headers(),
                )
            )
        return pending

    @staticmethod
    def _count(result: BatchResult, redelivered: int, size: int, seconds: float) -> None:
        for event_type, n in result.events_by_type.items():
            metrics.EVENTS.labels(event_type).inc(n)
        for letter in result.dead_letters:
            metrics.DEAD_LETTERS.labels(letter.reason).inc()
        for action in result.actions:
            metrics.ACTIONS.labels(action.play, action.channel).inc()
            for suppression in action.suppress:
                metrics.SUPPRESSIONS.labels(suppression.channel).inc()
        if redelivered:
            metrics.REDELIVERED.inc(redelivered)
        metrics.BATCH_SIZE.observe(size)
        metrics.BATCH_SECONDS.observe(seconds)


def _record(event: faust.EventT[bytes]) -> Record:
    message = event.message
    return Record(
        topic=message.topic,
        partition=message.partition,
        offset=message.offset,
        key=message.key,
        value=message.value,
        timestamp_ms=int(message.timestamp * 1000) if message.timestamp else None,
    )


def attach(app: faust.App, worker: DecisionWorker) -> None:
    """Register the decision agent on `app`."""
    settings = worker.settings
    channel = app.topic(
        *settings.input_topics,
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
    )

    async def decide(stream: faust.StreamT[bytes]) -> None:
        # noack_take yields events (not values) and leaves acknowledging to us.
        source = cast(faust.Stream[bytes], stream)
        batches = source.noack_take(settings.batch_max, within=settings.batch_within_s)
        async for batch in batches:
            events = cast(Sequence[faust.EventT[bytes]], batch)
            if await worker.handle([_record(e) for e in events]):
                for event in events:
                    await source.ack(event)

    app.agent(channel, name="tact.decide", concurrency=1)(decide)
    app.on_partitions_revoked.connect(cast(Any, worker.on_partitions_revoked))
    app.on_partitions_assigned.connect(cast(Any, worker.on_partitions_assigned))
