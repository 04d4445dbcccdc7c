"""Throughput of `tact worker` through the real broker and Redis, beside the raw floor.

Produces a generated stream into fresh topics. Then, back to back on the same broker and
stream: the raw floor, an aiokafka passthrough (consume both inputs in a group of its own,
orjson.loads each record, send one record out per input with acks=all, commit per batch), and
one `tact worker` process, timed until its Redis checkpoint covers every input record. Reports
both in events/s (each from its first batch to its last, so start-up is reported apart), the
worker's share of the floor, its peak RSS, and actions out.

    python -m benchmarks.worker_throughput --customers 8000 [--profile worker.prof]
        [--marks marks.jsonl]

With --profile the worker runs under cProfile (its main thread: the agent, the engine, the
producer's and Redis's asyncio side; not Faust's consumer thread) and the profile is written
there at its stop: `python -m pstats worker.prof`. Profiling slows it: not a throughput figure.
cProfile sees no function of the compiled core (README "Performance"): their time is counted
in their interpreted callers (set TACT_PURE_PYTHON=1 to profile the core as Python).

With --marks the worker's RSS is read at each step of every batch (benchmarks/marked_worker.py:
a few reads of /proc a batch) and the run ends with what each step added.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import orjson
from kafka.admin import NewTopic

from app import CORE_BUILD, codec
from app.cli.demo import remove_namespace
from app.io import clients
from app.io.kafka_admin import ensure_topics
from app.io.redis_store import checkpointed
from app.sample import generate
from app.settings import Settings
from benchmarks import marked_worker
from schemas import FAMILY_OF_TYPE

ROOT = Path(__file__).resolve().parents[1]


async def passthrough(
    settings: Settings, topics: list[str], out: str, linger_ms: int, wait_ms: int
) -> AsyncIterator[int]:
    """The raw floor: consume `topics` in a group of its own, orjson.loads each record, send
    one record per input into `out` naming its event (acks=all), wait for them, commit; yields
    each batch's size."""
    consumer = clients.aiokafka_consumer(
        settings,
        *topics,
        group_id=f"{settings.app_id}-raw",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_records=500,
    )
    producer = clients.aiokafka_producer(settings, linger_ms=linger_ms)
    await consumer.start()
    await producer.start()
    try:
        while True:
            batch = await consumer.getmany(timeout_ms=wait_ms, max_records=500)
            sent = []
            for records in batch.values():
                for record in records:
                    event = orjson.loads(record.value)
                    body = orjson.dumps({"source_event_id": event.get("event_id")})
                    sent.append(await producer.send(out, key=record.key, value=body))
            if sent:
                await asyncio.gather(*sent)
                await consumer.commit()
                yield len(sent)
    finally:
        await consumer.stop()
        await producer.stop()


def raw_floor(settings: Settings, topics: list[str], out: str, events: int) -> tuple[float, float]:
    """Events/s of the raw passthrough of `topics` into `out` (from its first batch), and the
    CPU seconds it took an event (this process's, which does nothing else meanwhile)."""

    async def measure() -> tuple[float, float]:
        seen, first = 0, None
        batches = passthrough(settings, topics, out, linger_ms=5, wait_ms=500)
        try:
            async for n in batches:
                seen += n
                if first is None:
                    first = (time.perf_counter(), seen, time.process_time())
                if seen >= events:
                    break
        finally:
            await batches.aclose()
        assert first is not None
        counted = events - first[1]
        cpu = (time.process_time() - first[2]) / counted
        return counted / (time.perf_counter() - first[0]), cpu

    return asyncio.run(measure())


def cpu_seconds(pid: int) -> float:
    """The CPU time a process has taken so far, user and system (/proc/<pid>/stat)."""
    with open(f"/proc/{pid}/stat", "rb") as stat:
        fields = stat.read().rsplit(b")", 1)[1].split()  # (after the command's name)
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def bench_settings(tag: str, partitions: int, batch_max: int) -> Settings:
    """Settings of a benchmark's own app id and topics (created), so runs never meet."""
    settings = Settings().model_copy(
        update={
            "app_id": f"tact-bench-{tag}",
            "topic_clickstream": f"bench-clickstream-{tag}",
            "topic_orders": f"bench-orders-{tag}",
            "topic_actions": f"bench-actions-{tag}",
            "topic_dead_letters": f"bench-dead-letters-{tag}",
            "topic_outcomes": f"bench-outcomes-{tag}",
            "topic_connector_dead_letters": f"bench-connector-dead-letters-{tag}",
            "topic_partitions": partitions,
            "batch_max": batch_max,
            "metrics_port": 0,
        }
    )
    ensure_topics(settings)
    return settings


def start_worker(
    settings: Settings,
    log: Path,
    profile: str | None = None,
    module: tuple[str, ...] = ("app.cli", "worker"),
    env: dict[str, str] | None = None,
    **extra: object,
) -> subprocess.Popen[bytes]:
    """One `tact worker` process (or `python -m *module`) on `settings` (and `extra` TACT_
    settings, and `env`), logging to `log`."""
    names = (
        "app_id",
        "topic_clickstream",
        "topic_orders",
        "topic_actions",
        "topic_dead_letters",
        "topic_outcomes",
        "topic_connector_dead_letters",
        "batch_max",
    )
    values = {k: getattr(settings, k) for k in names}
    values.update(metrics_port=0, log_format="json", **extra)
    env = {**os.environ, **(env or {}), **{f"TACT_{k.upper()}": str(v) for k, v in values.items()}}
    log.parent.mkdir(exist_ok=True)
    profiled = ["-m", "cProfile", "-o", str(Path(profile).resolve())] if profile else []
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, *profiled, "-m", *module],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )


@contextlib.contextmanager
def own_run(settings: Settings, keep: bool) -> Iterator[None]:
    """The run's topics and Redis keys, removed at its end (unless `keep`): left behind, a
    broker full of old runs' topics answered later runs more slowly (Performance: latency
    p99 49-60 ms against 22-38 on a fresh stack)."""
    try:
        yield
    finally:
        if keep:
            print(f"kept this run's topics and Redis keys ({settings.app_id})", flush=True)
        else:
            topics, keys = remove_namespace(settings)
            print(
                f"removed this run's {topics} topics and {keys:,} Redis keys (--keep to keep them)",
                flush=True,
            )


def run(
    customers: int,
    partitions: int,
    batch_max: int,
    profile: str | None = None,
    keep: bool = False,
    marks: str | None = None,
) -> dict[str, float | str]:
    tag = uuid.uuid4().hex[:8]
    settings = bench_settings(tag, partitions, batch_max)
    with own_run(settings, keep):
        return _run(settings, customers, partitions, batch_max, profile, marks)


def _run(
    settings: Settings,
    customers: int,
    partitions: int,
    batch_max: int,
    profile: str | None,
    marks: str | None = None,
) -> dict[str, float]:
    raw_out = f"{settings.app_id}-raw"  # (named under the app id: removed with the run)
    admin = clients.admin(settings)
    admin.create_topics([NewTopic(raw_out, partitions, settings.topic_replication)])
    admin.close()
    topics = {"clickstream": settings.topic_clickstream, "orders": settings.topic_orders}

    started = time.perf_counter()
    producer = clients.producer(
        settings,
        linger_ms=50,
        batch_size=256 * 1024,
        acks=1,
    )
    events = 0
    for e in generate(customers, seed=42):
        producer.send(
            topics[FAMILY_OF_TYPE[e["type"]]], key=e["customer_id"].encode(), value=codec.dumps(e)
        )
        events += 1
    producer.flush()
    producer.close()  # (its sender thread must not run beside the floor, which is timed)
    produce_s = time.perf_counter() - started
    print(
        f"produced {events} events of {customers} customers in {produce_s:.1f} s "
        f"({events / produce_s:,.0f}/s with kafka-python)",
        flush=True,
    )
    floor, floor_cpu = raw_floor(settings, list(topics.values()), raw_out, events)
    print(
        f"raw aiokafka passthrough: {floor:,.0f} events/s, {floor_cpu * 1e6:.1f} us of CPU an "
        "event",
        flush=True,
    )

    client = clients.redis_client(settings)
    log = ROOT / ".run" / f"{settings.app_id}-worker.log"
    t0 = time.perf_counter()
    module, env = ("app.cli", "worker"), {}
    if marks:  # (the worker with its RSS marked at each step of every batch)
        Path(marks).write_bytes(b"")
        module, env = ("benchmarks.marked_worker",), {"BENCH_MARKS_FILE": marks}
    worker = start_worker(settings, log, profile, module=module, env=env)
    first, rss_first, cpu_first = None, float("nan"), 0.0
    try:
        while (done := sum(checkpointed(client, settings.redis_prefix).values())) < events:
            if first is None and done:
                first = (time.perf_counter(), done)
                rss_first = marked_worker.rss_mib(worker.pid)  # start-up's: imports, clients
                cpu_first = cpu_seconds(worker.pid)
            if worker.poll() is not None:
                raise SystemExit(f"worker exited; see {log}")
            time.sleep(0.05)
        t_end = time.perf_counter()
        rss = marked_worker.rss_mib(worker.pid, "VmHWM")
        cpu = (cpu_seconds(worker.pid) - cpu_first) / (events - first[1])
    finally:
        worker.terminate()
        worker.wait(timeout=60)
    assert first is not None
    steady = (events - first[1]) / (t_end - first[0])
    result = {
        "events": events,
        "customers": customers,
        "startup_s": first[0] - t0,
        "raw_events_per_s": floor,
        "events_per_s": steady,
        # CPU seconds an event, after the first checkpoint and in the floor: less swayed by
        # what else the machine runs than events/s (a worker waiting on its broker and Redis
        # takes no CPU meanwhile)
        "cpu_us_per_event": cpu * 1e6,
        "raw_cpu_us_per_event": floor_cpu * 1e6,
        "total_s": t_end - t0,
        "peak_rss_mib": rss,
        "rss_at_first_checkpoint_mib": rss_first,
        # the peak past start-up's RSS, per customer: the worker holds every customer of the
        # stream at its end (TACT_MAX_CACHED_CUSTOMERS is larger), and its peak includes what
        # closing their windows churns (README "Memory per customer")
        "kib_per_customer": (rss - rss_first) * 1024 / customers,
        "core": CORE_BUILD,
    }
    print(
        f"worker (core: {CORE_BUILD}): first checkpoint {result['startup_s']:.1f} s after start; "
        f"{steady:,.0f} events/s after that ({steady / floor:.0%} of the raw floor), "
        f"{cpu * 1e6:.1f} us of CPU an event ({floor_cpu / cpu:.0%} of the floor's pace); all "
        f"{events} in {result['total_s']:.1f} s; "
        f"peak RSS {rss:.0f} MiB, {rss_first:.0f} at its first checkpoint: "
        f"{result['kib_per_customer']:.1f} KiB a customer past that "
        f"(batch_max {batch_max}, {partitions} partitions)"
    )
    if marks:
        with open(marks, "rb") as lines:
            print("\n".join(marked_worker.summary(lines)))
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=8000)
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument("--batch-max", type=int, default=500)
    parser.add_argument("--profile", help="run the worker under cProfile, writing here")
    parser.add_argument(
        "--keep", action="store_true", help="keep the run's topics and Redis keys at its end"
    )
    parser.add_argument(
        "--marks",
        metavar="FILE",
        help="mark the worker's RSS at each step of every batch into FILE (JSON lines) and "
        "say which steps grow it (benchmarks/marked_worker.py)",
    )
    args = parser.parse_args(argv)
    run(args.customers, args.partitions, args.batch_max, args.profile, args.keep, args.marks)


if __name__ == "__main__":
    main()
