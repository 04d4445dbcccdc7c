"""Latency of the onsite decision API (`tact connector run onsite`) under a fixed load.

Seeds offers for 10,000 customers in Redis, starts the connector (its API pinned to CPU 0),
and sends GET /v1/customers/{id}/offer at a fixed rate from this process (pinned to CPU 1),
open loop: each request is timed from when it was due to be sent, so queueing counts against
the server. Prints the latency percentiles; asserts nothing. Needs Kafka and Redis (`make up`).

    python -m benchmarks.onsite_api --rate 1000 --seconds 20
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp

from app.cli.demo import free_port
from app.connectors.onsite import Onsite
from app.io import clients
from app.settings import Settings

TACT = Path(sys.executable).with_name("tact")


def _port() -> int:
    return free_port("127.0.0.1", 0)


def seed(settings: Settings, customers: int) -> None:
    store = clients.redis_client(settings)
    onsite = Onsite(store, settings.redis_prefix)
    now = datetime.now(UTC)
    for n in range(customers):
        onsite.deliver(
            {
                "action_id": f"{n:032x}",
                "customer_id": f"bench{n}",
                "channel": "onsite_pdp",
                "play": "expand",
                "offer_sku": "RUN-SOCK-01",
                "frame": "completeness",
                "intensity": "low",
                "not_before": now.isoformat(),
                "expires_at": (now + timedelta(hours=2)).isoformat(),
                "holdout": False,
                "suppress": [],
            }
        )


async def load(
    port: int, rate: float, seconds: float, customers: int
) -> tuple[list[float], list[float], dict[str, int]]:
    latencies: list[float] = []
    late: list[float] = []  # how late the client itself sent each request
    errors: dict[str, int] = {}
    connector = aiohttp.TCPConnector(limit=200)
    base = f"http://127.0.0.1:{port}/v1/customers"
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one(n: int, due: float) -> None:
            url = f"{base}/bench{n % customers}/offer?surface=onsite_pdp"
            late.append(time.perf_counter() - due)
            try:
                async with session.get(url) as response:
                    await response.read()
                    if response.status != 200:
                        errors[f"HTTP {response.status}"] = (
                            errors.get(f"HTTP {response.status}", 0) + 1
                        )
            except aiohttp.ClientError as exc:
                errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
            latencies.append(time.perf_counter() - due)

        total = int(rate * seconds)
        start = time.perf_counter() + 0.5
        tasks = []
        for n in range(total):
            due = start + n / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(n, due)))
        await asyncio.gather(*tasks)
    return latencies, late, errors


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=1000.0)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--customers", type=int, default=10_000)
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args(argv)
    settings = Settings().model_copy(update={"app_id": f"bench-onsite-{uuid.uuid4().hex[:6]}"})
    seed(settings, args.customers)
    port = _port()
    env = {**os.environ, "TACT_APP_ID": settings.app_id, "TACT_LOG_LEVEL": "warning"}
    command = [str(TACT), "connector", "run", "onsite", "--port", str(port)]
    if shutil.which("taskset"):
        command = ["taskset", "-c", "0", *command]
    server = subprocess.Popen(
        command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise SystemExit("the onsite API did not start") from None
                time.sleep(0.2)
        if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > 1:
            os.sched_setaffinity(0, {1})
        asyncio.run(load(port, args.rate, 2.0, args.customers))  # warm up
        latencies, late, errors = asyncio.run(load(port, args.rate, args.seconds, args.customers))
    finally:
        server.terminate()
        server.wait(timeout=30)
    ms = sorted(x * 1000 for x in latencies)
    late_ms = sorted(x * 1000 for x in late)

    def pct(p: float, values: list[float] = ms) -> float:
        return values[min(int(p / 100 * len(values)), len(values) - 1)]

    figures = {
        "rate": args.rate,
        "requests": len(ms),
        "errors": errors,
        "client_late_p99_ms": pct(99, late_ms),
        "p50_ms": pct(50),
        "p90_ms": pct(90),
        "p99_ms": pct(99),
        "p999_ms": pct(99.9),
        "max_ms": ms[-1],
        "mean_ms": statistics.fmean(ms),
    }
    print(
        f"onsite API at {args.rate:,.0f} requests/s for {args.seconds:g} s ({len(ms):,} requests, "
        f"errors: {errors or 'none'}): p50 {figures['p50_ms']:.2f} ms, "
        f"p90 {figures['p90_ms']:.2f} ms, p99 {figures['p99_ms']:.2f} ms, "
        f"p99.9 {figures['p999_ms']:.2f} ms, max {figures['max_ms']:.2f} ms "
        f"(the client itself sent late by up to {figures['client_late_p99_ms']:.2f} ms at p99)"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
