"""Batches that close when the records stop coming, not after a fixed wait.

Faust's `Stream.noack_take(max, within)` waits `within` seconds (or for `max` records) before
every batch, so at a few hundred events a second each event waited up to that long before
anything looked at it. `ready_batches` closes a batch as soon as no record has arrived for
`idle` seconds (at most `within` after its first record, at most `max_` records), so an
event at a quiet moment is decided within milliseconds. Records that come while the worker
handles a batch wait in Faust's buffers and make up the next one.

The default `idle` is 0.1 ms (TACT_BATCH_IDLE_S). It was 2 ms, but at a steady 1,000
events/s a 2 ms gap never comes, so every batch waited the whole `within` (100 ms): 0.1 ms took
p50/p99 at that rate from 103/242 ms to 23/111 ms (to 18-22/36-39 ms with agents/gcpacing.py)
at about the same throughput. Smaller batches exposed two bugs on the way, both fixed: reloading
evicted customers (DecisionEngine.restore) and a zombie reading its partitions' new owner's
states (fenced reads, app/store.py); the scale-out test that failed beside them in one CI run
passed 10 runs of 10 at 0.1 ms afterwards.
With no wait at all (a batch starts after one turn of the event loop without a record) a
backlog came in batches too small to pay for their checkpoints: about a fifth fewer events/s
(benchmarks/worker_throughput.py).

The buffering is Faust's own (a processor on the stream, the stream drained passively, events
left unacknowledged for the caller to ack once they are saved), with the wait changed.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any, cast

import faust


async def ready_batches(
    stream: faust.Stream[Any], max_: int, within: float, idle: float
) -> AsyncIterator[list[faust.EventT[Any]]]:
    """Unacknowledged batches of `stream`'s events (see the module's docstring)."""
    buffer: list[faust.EventT[Any]] = []
    arrived = asyncio.Event()
    consumed = asyncio.Event()
    consuming: asyncio.Future[None] | None = None
    loop = asyncio.get_running_loop()

    async def add(value: Any) -> Any:
        nonlocal consuming
        try:
            if consuming is not None:  # the caller has the buffer: wait until it is done
                try:
                    await consuming
                finally:
                    consuming = None
            event = stream.current_event
            if event is None:
                raise RuntimeError("a record reached the batch buffer without its event")
            buffer.append(event)
            arrived.set()
            if len(buffer) >= max_:  # full: never more than max_ in one batch
                consumed.clear()
                await stream.wait(cast(Any, consumed))  # mode's Event type; asyncio's works
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            stream.log.exception("Error adding to the batch buffer: %r", exc)
            await stream.crash(exc)
        return value

    enable_acks = stream.enable_acks
    stream.enable_acks = False  # the caller acknowledges, once the batch is saved
    stream.add_processor(add)
    stream._enable_passive(aiter(cast(Any, stream.channel)))
    try:
        while not stream.should_stop:
            if not buffer:
                arrived.clear()
                await stream.wait(cast(Any, arrived), timeout=within)
                if not buffer:
                    continue
            closes = loop.time() + within
            while len(buffer) < max_ and not stream.should_stop:
                left = closes - loop.time()
                if left <= 0:
                    break
                had = len(buffer)
                await asyncio.sleep(min(idle, left))
                if len(buffer) == had:
                    break  # nothing came for `idle`: this burst is over
            consuming = loop.create_future()
            try:
                yield list(buffer)
            finally:
                buffer.clear()
                if not consuming.done():
                    consuming.set_result(None)
                consumed.set()
    finally:
        stream.enable_acks = enable_acks
        stream._processors.remove(add)
