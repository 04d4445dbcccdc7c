"""`tact demo`: start a worker, play a realistic stream into the topics, show the actions live.

Each run has its own namespace: its own app id (consumer group and Redis prefix, so its
models start afresh), its own topics and its own directory of files (the world's catalog, the
worker's TACT_DATA_DIR) under the system's temporary directory, all removed when it ends
(`--keep` keeps them). Nothing it does reaches the topics, group or state of the configured
TACT_APP_ID, one run never teaches the next, and only the worker's log is left, in --log-dir.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kafka import TopicPartition

from app import codec
from app.cli.demo_loop import DAYS, Baseline, Loop, demo_world
from app.io import clients
from app.io.kafka_admin import admin_client, ensure_topics
from app.io.redis_store import app_key_patterns, checkpointed
from app.sample import generate
from app.settings import TOPICS, Settings
from app.simulate.run import write_catalog
from schemas import FAMILY_OF_TYPE

_COLOURS = {"expand": "32", "commit": "36", "assist": "34", "protect": "33"}

# A few records a real stream also carries, to show that they become dead letters.
_GARBAGE: tuple[bytes, ...] = (
    b"{this is not json",
    b'{"event_id":"x","type":"teleport","customer_id":"demo","ts":0}',
    b'{"event_id":"y","type":"add_to_cart","customer_id":"demo","ts":0,"qty":"two"}',
)


@dataclass
class DemoStats:
    events: Counter[str] = field(default_factory=Counter)
    plays: Counter[str] = field(default_factory=Counter)
    channels: Counter[str] = field(default_factory=Counter)
    suppressions: Counter[str] = field(default_factory=Counter)
    dead_letters: Counter[str] = field(default_factory=Counter)
    first_action_s: float | None = None


def namespace(settings: Settings, tag: str) -> Settings:
    """The settings of one demo run: its own app id and topics."""
    return settings.model_copy(
        update={
            "app_id": f"tact-demo-{tag}",
            **{f"topic_{t}": f"demo-{tag}-{t.replace('_', '-')}" for t in TOPICS},
        }
    )


def namespace_env(settings: Settings) -> dict[str, str]:
    """The environment for a worker of this namespace (the rest as configured)."""
    names = {"app_id": settings.app_id} | {f"topic_{t}": n for t, n in settings.topics.items()}
    return {**os.environ, **{f"TACT_{k.upper()}": v for k, v in names.items()}}


def free_port(host: str, wanted: int) -> int:
    """`wanted` when nothing listens on it at `host`, else a port the system has free (0:
    none, or a host the status page cannot serve on)."""
    for port in (wanted, 0):
        with socket.socket(socket.AF_INET) as probe:  # the status page serves IPv4
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the page does
            try:
                probe.bind((host, port))
            except OSError:
                continue
            return int(probe.getsockname()[1])
    return 0


def remove_namespace(settings: Settings) -> tuple[int, int]:
    """Delete a demo run's topics (with Faust's own, named after the app id) and Redis keys;
    returns how many of each."""
    topics = set(settings.topics.values())
    admin = admin_client(settings)
    try:
        present = [
            t for t in admin.list_topics() if t in topics or t.startswith(f"{settings.app_id}-")
        ]
        if present:
            admin.delete_topics(present)
    finally:
        admin.close()
    redis = clients.redis_client(settings)
    try:
        keys = [
            key
            for pattern in app_key_patterns(settings.redis_prefix)
            for key in redis.scan_iter(match=pattern, count=1000)
        ]
        with redis.pipeline(transaction=False) as pipe:  # (a key per command: a cluster's
            for key in keys:  # keys of one DEL must share a slot)
                pipe.unlink(key)
            pipe.execute()
    finally:
        redis.close()
    return len(present), len(keys)


class Demo:
    def __init__(
        self,
        settings: Settings,
        customers: int,
        rate: float,
        seed: int | None,
        log_dir: Path,
        colour: bool,
        keep: bool = False,
        world: str | None = None,
        days: float = DAYS,
    ) -> None:
        self.settings = namespace(settings, uuid.uuid4().hex[:8])
        self.keep = keep
        self.world = world  # a closed loop with this simulated world (else a sample stream)
        self.days = days
        self.customers = customers
        self.rate = rate
        self.seed = seed if seed is not None else int(time.time())
        self.log_path = log_dir.absolute() / "demo-worker.log"
        self.learner_log_path = log_dir.absolute() / "demo-learner.log"
        self.files = Path()  # this run's files (made by `run`, removed with its topics)
        self.colour = colour
        self.stats = DemoStats()
        self.started = time.monotonic()

    def say(self, text: str = "") -> None:
        print(text, flush=True)

    def paint(self, code: str, text: str) -> str:
        return f"\x1b[{code}m{text}\x1b[0m" if self.colour else text

    def run(self, wait: bool) -> int:
        s = self.settings
        self.files = Path(tempfile.mkdtemp(prefix=f"{s.app_id}-"))
        self.say(
            f"tact demo: Kafka {s.kafka_bootstrap}, Redis {s.redis_shown}, "
            f"{self.customers} customers, seed {self.seed}; this run's namespace: app id "
            f"{s.app_id}, topics demo-{s.app_id.removeprefix('tact-demo-')}-*, files in "
            f"{self.files}"
        )
        try:
            ensure_topics(s)
            return self._run(wait)
        finally:
            self._clean_up()

    def _clean_up(self) -> None:
        s = self.settings
        if self.keep:
            self.say(f"kept its topics and state (app id {s.app_id}) and files ({self.files})")
            return
        shutil.rmtree(self.files, ignore_errors=True)
        try:
            topics, keys = remove_namespace(s)
        except Exception as exc:  # the demo's result stands; say what is left behind
            self.say(f"could not remove this run's topics and state ({exc}); app id {s.app_id}")
            return
        self.say(
            f"removed this run's {topics} topics, {keys} Redis keys and files (--keep keeps "
            f"them); the worker's and the learner's logs stay in {self.log_path.parent}"
        )

    def _run(self, wait: bool) -> int:
        s = self.settings
        # as a deployment runs: the worker decides, one learner learns (`tact learner`)
        env = namespace_env(s) | {
            "TACT_DATA_DIR": str(self.files / "worker"),
            "TACT_LEARNER": "true",
        }
        if s.metrics_port:  # a worker of yours may hold the configured port: take a free one
            port = free_port(s.metrics_host, s.metrics_port)
            env["TACT_METRICS_PORT"] = str(port)
            self.say(
                f"the demo worker's status page: http://{s.metrics_host}:{port}/"
                if port
                else f"the demo worker goes without a status page (none free on {s.metrics_host})"
            )
        loop = None
        if self.world is not None:
            loop = self._prepare_loop(env)
        tails = _Tail(s, [s.topic_actions, s.topic_dead_letters])
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        started: list[subprocess.Popen[bytes]] = []
        with self.log_path.open("ab") as log, self.learner_log_path.open("ab") as learner_log:
            try:
                for command, out in (("worker", log), ("learner", learner_log)):
                    started.append(
                        subprocess.Popen(
                            [sys.executable, "-m", "app.cli", command],
                            stdout=out,
                            stderr=subprocess.STDOUT,
                            env=env,
                        )
                    )
                worker, learner = started
                self.say(
                    f"worker started (pid {worker.pid}), and the learner that learns from its "
                    f"Outcomes (pid {learner.pid}); their logs: {self.log_path}, "
                    f"{self.learner_log_path.name}"
                )
                if loop is not None:
                    self._loop(*loop)
                    return 0 if worker.poll() is None and learner.poll() is None else 1
                self._play(tails, worker)
                self._drain(tails, worker, quiet_s=2.0)
                self._summary()
                if wait:
                    self.say(
                        "\nThe worker keeps running: produce your own events to "
                        f"'{s.topic_clickstream}' / '{s.topic_orders}'. Ctrl-C stops it all."
                    )
                    while worker.poll() is None:
                        self._show(tails.poll())
            except KeyboardInterrupt:
                self.say("\nstopping")
            finally:
                tails.close()
                _stop(started)
        stopped = (0, -signal.SIGTERM, None)
        return 0 if all(p.returncode in stopped for p in started) else 1

    def _prepare_loop(self, env: dict[str, str]) -> tuple[Loop, Baseline, Baseline]:
        """The world, its catalog for the worker, and the same shoppers never upsold and
        decided by tact at its priors."""
        assert self.world is not None
        world = demo_world(self.world, self.customers, self.days)
        loop = Loop(self.settings, world, self.seed, self.say, self._offer)
        env["TACT_CATALOG"] = str(write_catalog(loop.catalog, self.files / "catalog.jsonl"))
        started = time.monotonic()
        never, frozen = loop.baselines()
        self.say(
            f"world '{world.name}': {world.customers} shoppers over the last {world.days:g} "
            f"days. On the same shoppers, run in-process first "
            f"({time.monotonic() - started:.1f} s): never upselling earns {never.final:,.2f}; "
            f"tact with its models kept at the policy's priors (not learning) adds "
            f"{frozen.final - never.final:+,.2f}\n"
        )
        return loop, never, frozen

    def _loop(self, loop: Loop, never: Baseline, frozen: Baseline) -> None:
        self.say(
            "each event goes through Kafka to the worker; the learner learns from its "
            "Outcomes and publishes models every few seconds, which the worker takes up as it "
            f"goes; a few of its offers (at most {loop.shown_per_line} between two lines) "
            "and, every few seconds, how it stands:"
        )
        result = loop.run(never, frozen)
        plays = ", ".join(f"{k} {v:,}" for k, v in Counter(result["plays"]).most_common())
        self.say("\nsummary")
        self.say(
            f"  played         {result['events']:,} events live in {result['seconds']:.0f} s "
            f"({result['events'] / max(result['seconds'], 1e-9):,.0f}/s)"
        )
        self.say(f"  decisions      {sum(result['plays'].values()):,}  ({plays})")
        self.say(
            f"  shoppers       {result['accepted']:,} offers taken, "
            f"{result['unsubscribes']:,} unsubscribes"
        )
        self.say(
            f"  profit         tact {result['tact']:,.2f}, never upselling {result['never']:,.2f}:"
            f" tact added {result['added']:+,.2f} ({result['per_customer']:+.2f} per shopper)"
        )
        self.say(
            f"  learning       at its priors tact added {result['frozen']:+,.2f}; learning "
            f"live it added {result['added'] - result['frozen']:+,.2f} more"
        )
        head = f"{'added against never upselling:':<31}{'learning live':>14}{'at its priors':>16}"
        self.say(f"  by period      {head}")
        for a, b, live, frozen_added in result["periods"]:
            days = f"days {a:g}-{b:g}"
            self.say(f"{'':17}{days:<31}{live:>+14,.2f}{frozen_added:>+16,.2f}")
        self.say(f"  models         {result['model']} (learned online from the Outcomes)")

    def _offer(self, action: dict[str, Any]) -> None:
        self.stats.plays[action["play"]] += 1
        self.say(
            _line(action, self.paint(_COLOURS.get(action["play"], "0"), f"{action['play']:<7}"))
        )

    def _play(self, tails: _Tail, worker: subprocess.Popen[bytes]) -> None:
        s = self.settings
        topics = {"clickstream": s.topic_clickstream, "orders": s.topic_orders}
        producer = clients.producer(s, linger_ms=20)
        # Customers of this run only: a second run, even with the same seed, starts afresh.
        run = int(time.time()) % 1_000_000
        events = list(generate(self.customers, seed=self.seed, prefix=f"d{run}-"))
        garbage_at = {
            len(events) * (i + 1) // (len(_GARBAGE) + 1): g for i, g in enumerate(_GARBAGE)
        }
        self.say(
            f"playing {len(events)} events at {self.rate:.0f}/s "
            f"(plus {len(_GARBAGE)} bad records)\n"
        )
        for n, e in enumerate(events):
            producer.send(
                topics[FAMILY_OF_TYPE[e["type"]]],
                key=e["customer_id"].encode(),
                value=codec.dumps(e),
            )
            self.stats.events[e["type"]] += 1
            if n in garbage_at:
                producer.send(s.topic_clickstream, key=b"demo", value=garbage_at[n])
            if n % 25 == 0:
                producer.flush()
                self._show(tails.poll(timeout_ms=0))
                if worker.poll() is not None:
                    raise SystemExit(f"the worker exited; see {self.log_path}")
                time.sleep(25 / self.rate)
        producer.flush()
        producer.close()

    def _drain(self, tails: _Tail, worker: subprocess.Popen[bytes], quiet_s: float) -> None:
        """Show what comes until the worker has checkpointed every record played (or for at
        most a minute), then until nothing more comes for `quiet_s`."""
        played = sum(self.stats.events.values()) + len(_GARBAGE)
        offsets = clients.redis_client(self.settings)
        deadline = time.monotonic() + 60
        try:
            while time.monotonic() < deadline and worker.poll() is None:
                if sum(checkpointed(offsets, self.settings.redis_prefix).values()) >= played:
                    break
                self._show(tails.poll())
        finally:
            offsets.close()
        last = time.monotonic()
        while time.monotonic() - last < quiet_s and worker.poll() is None:
            if self._show(tails.poll()):
                last = time.monotonic()

    def _show(self, records: list[Any]) -> int:
        for r in records:
            if r.topic == self.settings.topic_dead_letters:
                headers = {k: v.decode() for k, v in r.headers}
                reason = headers.get("tact.dlq.reason", "?")
                self.stats.dead_letters[reason] += 1
                self.say(
                    self.paint(
                        "31",
                        f"  dead letter  {reason:<13} {headers.get('tact.dlq.detail', '')[:70]}",
                    )
                )
                continue
            a = codec.loads(r.value)
            if self.stats.first_action_s is None:
                self.stats.first_action_s = time.monotonic() - self.started
            self.stats.plays[a["play"]] += 1
            self.stats.channels[a["channel"]] += 1
            for sup in a["suppress"]:
                self.stats.suppressions[sup["channel"]] += 1
            self.say(_line(a, self.paint(_COLOURS.get(a["play"], "0"), f"{a['play']:<7}")))
        return len(records)

    def _summary(self) -> None:
        st = self.stats
        total = sum(st.plays.values())
        self.say("\nsummary")
        self.say(f"  events played  {sum(st.events.values())}  ({_top(st.events)})")
        self.say(
            f"  actions        {total}  by play: {_top(st.plays)}; by channel: {_top(st.channels)}"
        )
        self.say(f"  suppressions   {sum(st.suppressions.values())}  ({_top(st.suppressions)})")
        self.say(f"  dead letters   {sum(st.dead_letters.values())}  ({_top(st.dead_letters)})")
        if st.first_action_s is not None:
            self.say(f"  first action   {st.first_action_s:.1f} s after the demo started")


def _line(a: dict[str, Any], play: str) -> str:
    """One action as a line: when, who, what, where, and the short why."""
    offer = f"{a['offer_sku']} ({a['frame']}, {a['intensity']})" if a["offer_sku"] else ""
    quiet = ", ".join(sorted({x["channel"] for x in a["suppress"]}))
    why = [c for c in a["reasons"] if c.startswith(("moment:", "rule:", "protect:", "seq:"))]
    return (
        f"  {a['ts'][5:16].replace('T', ' ')}  {a['customer_id']:<15} {play} "
        f"{a['channel']:<14} {offer:<44} {'quiet: ' + quiet if quiet else '':<30}"
        f"{' [holdout]' if a['holdout'] else ''}  {' '.join(why)}"
    )


def _top(counter: Counter[str]) -> str:
    return ", ".join(f"{k} {v}" for k, v in counter.most_common()) or "none"


class _Tail:
    """Reads topics from their current end: only what this demo run produces."""

    def __init__(self, settings: Settings, topics: list[str]) -> None:
        self.consumer = clients.consumer(settings, enable_auto_commit=False)
        parts = [
            TopicPartition(t, p)
            for t in topics
            for p in sorted(self.consumer.partitions_for_topic(t) or ())
        ]
        self.consumer.assign(parts)
        self.consumer.seek_to_end()
        for tp in parts:
            self.consumer.position(tp)  # resolve the end offsets now, before anything is sent

    def poll(self, timeout_ms: int = 300) -> list[Any]:
        batches = self.consumer.poll(timeout_ms=timeout_ms)
        return sorted((r for rs in batches.values() for r in rs), key=lambda r: r.timestamp)

    def close(self) -> None:
        self.consumer.close()


def _stop(processes: list[subprocess.Popen[bytes]]) -> None:
    """SIGTERM to all of them at once, then each waited for (killed after 30 s); a second
    Ctrl-C meanwhile kills them rather than leave one running."""
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    try:
        for process in processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
