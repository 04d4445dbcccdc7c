"""Event -> action latency of one `tact worker`, open loop, through the real broker and Redis.

Sends a generated stream into fresh topics at a fixed rate, whatever the worker does (open
loop: a slow worker builds a backlog and its latency shows it, as a store's traffic would),
each event stamped with the time it is sent, and reads the actions topic as it goes. An
action's latency is its record's timestamp (the worker's producer sets it when it sends) less
the send time of the event that prompted it (`source_event_id`); both clocks are this
machine's. Each rate runs for `--seconds` after a warm-up that is not counted, one after the
other on the same worker, and reports p50, p99 and the maximum, with the actions counted and
the backlog left when the rate ended.

    python -m benchmarks.latency --rate 1000 --seconds 30
    python -m benchmarks.latency --rates 300,1000,3000 --seconds 30
    python -m benchmarks.latency --rate 1000 --floor

With --floor the same rates first go through the raw floor, in a process of its own on
topics of its own, then through the worker: an aiokafka passthrough (consume both inputs,
orjson.loads each record, send one record out per input naming it, acks=all, commit per
batch), so the worker's latency can be read against what the broker, the client and this
machine cost without it.

Events carry the time they are sent as their own `ts` (live traffic, not a replay of the
past). Figures, never assertions: run it on a quiet machine and compare back to back.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import itertools
import statistics
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import orjson
from kafka import KafkaProducer

from app import codec
from app.io import clients
from app.sample import generate
from app.settings import Settings
from benchmarks.worker_throughput import (
    ROOT,
    bench_settings,
    own_run,
    passthrough,
    start_worker,
)
from schemas import FAMILY_OF_TYPE

_WARMUP_S = 5.0
_DRAIN_S = 10.0  # after a rate ends, how long its last actions may still come


class Actions(threading.Thread):
    """Reads the actions topic; keeps (record time, source event id) of every action."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(daemon=True)
        self.consumer = clients.consumer(
            settings,
            settings.topic_actions,
            group_id=f"{settings.app_id}-latency",
            auto_offset_reset="earliest",
            enable_auto_commit=False,
        )
        self.seen: list[tuple[float, str]] = []
        self.lock = threading.Lock()
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            for records in self.consumer.poll(timeout_ms=100).values():
                got = [
                    (r.timestamp / 1000.0, orjson.loads(r.value).get("source_event_id", ""))
                    for r in records
                ]
                with self.lock:
                    self.seen.extend(got)
        self.consumer.close()

    def since(self, n: int) -> list[tuple[float, str]]:
        with self.lock:
            return self.seen[n:]


def _endless(customers: int) -> Iterator[dict[str, Any]]:
    """Generated events without end: a new crowd of `customers` whenever one is done."""
    crowd = 0
    while True:
        yield from generate(customers, seed=7 + crowd, prefix=f"c{crowd}-")
        crowd += 1


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(int(q * len(ordered)), len(ordered) - 1)]


def send_at_rate(
    producer: KafkaProducer,
    topics: dict[str, str],
    stream: Iterator[dict[str, Any]],
    rate: float,
    seconds: float,
) -> dict[str, float]:
    """Send `rate` events/s from `stream` for `seconds`, on schedule (never waiting for the
    worker). Returns each event's send time by its event id. The events are generated
    before the clock starts: a new crowd's start held the sends back 1.3 s, then sent them
    all at once, and the worker's latency showed it."""
    total = int(rate * seconds)
    events = list(itertools.islice(stream, total))
    gc.collect()  # (and kept out of this process's full collections, which would hold back
    gc.freeze()  # sends already stamped)
    start = time.time()
    sent: dict[str, float] = {}
    for event in events:
        due = start + len(sent) / rate
        now = time.time()
        if due > now:
            time.sleep(due - now)
            now = time.time()
        event["ts"] = datetime.fromtimestamp(now, UTC).isoformat()
        sent[event["event_id"]] = now
        producer.send(
            topics[FAMILY_OF_TYPE[event["type"]]],
            key=event["customer_id"].encode(),
            value=codec.dumps(event),
            timestamp_ms=int(now * 1000),
        )
    producer.flush()
    return sent


async def forward(settings: Settings) -> None:
    """The raw floor (benchmarks/worker_throughput.py `passthrough`) into the actions topic,
    until it is stopped."""
    topics = list(settings.input_topics)
    async for _ in passthrough(settings, topics, settings.topic_actions, linger_ms=0, wait_ms=100):
        pass


def run(
    rates: list[float],
    seconds: float,
    customers: int,
    floor: bool = False,
    keep: bool = False,
) -> list[dict[str, float]]:
    """Each rate in turn through one `tact worker` (or, with `floor`, the raw passthrough)."""
    tag = uuid.uuid4().hex[:8]
    settings = bench_settings(tag, partitions=6, batch_max=500)
    with own_run(settings, keep):
        return _run(settings, rates, seconds, customers, floor)


def _run(
    settings: Settings, rates: list[float], seconds: float, customers: int, floor: bool
) -> list[dict[str, float]]:
    topics = {"clickstream": settings.topic_clickstream, "orders": settings.topic_orders}
    producer = clients.producer(settings, linger_ms=0, acks=1)
    actions = Actions(settings)
    actions.start()
    log = ROOT / ".run" / f"{settings.app_id}-latency.log"
    if floor:
        worker = start_worker(settings, log, module=("benchmarks.latency", "--passthrough"))
    else:
        worker = start_worker(settings, log)
    name = "raw floor" if floor else "worker"
    stream = _endless(customers)
    results = []
    try:
        # warm-up: until the worker answers (its group formed, its first batch decided)
        t0 = time.time()
        while not actions.since(0):
            send_at_rate(producer, topics, stream, 50, 1.0)
            if worker.poll() is not None:
                raise SystemExit(f"worker exited; see {log}")
            if time.time() - t0 > 120:
                raise SystemExit(f"no action from the worker within 120 s; see {log}")
        send_at_rate(producer, topics, stream, min(rates), _WARMUP_S)
        time.sleep(_DRAIN_S)
        print(f"{name} answering {time.time() - t0:.1f} s after start", flush=True)
        for rate in rates:
            start = len(actions.since(0))
            sent = send_at_rate(producer, topics, stream, rate, seconds)
            n = len(sent)
            ended = time.time()
            time.sleep(_DRAIN_S)
            answered = [(at, source) for at, source in actions.since(start) if source in sent]
            latencies = [at - sent[source] for at, source in answered]
            behind = sum(1 for at, _ in answered if at > ended)
            if worker.poll() is not None:
                raise SystemExit(f"worker exited; see {log}")
            row = {
                "rate": rate,
                "events": n,
                "actions": len(latencies),
                "p50_ms": 1000 * statistics.median(latencies) if latencies else float("nan"),
                "p99_ms": 1000 * _percentile(latencies, 0.99) if latencies else float("nan"),
                "max_ms": 1000 * max(latencies) if latencies else float("nan"),
                "after_end": behind,
            }
            results.append(row)
            print(
                f"{name:>9}: {rate:>7,.0f} events/s for {seconds:.0f} s: {n:,} events, "
                f"{row['actions']:,} actions; latency p50 {row['p50_ms']:,.0f} ms, "
                f"p99 {row['p99_ms']:,.0f} ms, max {row['max_ms']:,.0f} ms; "
                f"{behind:,} actions came after the rate ended",
                flush=True,
            )
    finally:
        worker.terminate()
        worker.wait(timeout=60)
        actions.stop.set()
        actions.join(timeout=10)
        producer.close()
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, help="events/s (one rate)")
    parser.add_argument("--rates", default="300,1000,3000", help="events/s, comma-separated")
    parser.add_argument("--seconds", type=float, default=30.0, help="at each rate")
    parser.add_argument("--customers", type=int, default=20000, help="of the generated stream")
    parser.add_argument(
        "--floor",
        action="store_true",
        help="first the same rates through the raw floor (an aiokafka passthrough)",
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep each run's topics and Redis keys at its end"
    )
    parser.add_argument("--passthrough", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.passthrough:  # the floor's own process (run by --floor)
        settings = Settings()
        if not settings.app_id.startswith("tact-bench-"):  # never a store's own topics
            parser.error("--passthrough is run by --floor, on a benchmark's own topics")
        asyncio.run(forward(settings))
        return
    try:
        rates = [args.rate] if args.rate else [float(r) for r in args.rates.split(",")]
    except ValueError:
        parser.error(f"--rates: comma-separated numbers, not {args.rates!r}")
    if any(r <= 0 for r in rates) or args.seconds <= 0:
        parser.error("rates and --seconds must be positive")
    if args.floor:
        run(rates, args.seconds, args.customers, floor=True, keep=args.keep)
    run(rates, args.seconds, args.customers, keep=args.keep)


if __name__ == "__main__":
    main()
