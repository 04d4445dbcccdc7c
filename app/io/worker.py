"""`tact worker`: set up topics, check Redis, and run the Faust worker until stopped."""

from __future__ import annotations

import asyncio
import io
import logging
import logging.config
import os
import signal
import threading
import time
from collections.abc import Callable
from importlib.metadata import version
from typing import Any

import faust

from agents.decide import attach, producer_sender
from agents.worker import DecisionWorker
from app import CORE_BUILD
from app.catalog import Catalog
from app.engine import DecisionEngine
from app.errors import ConfigurationError
from app.io import clients, metrics
from app.io.faust_app import build_app
from app.io.kafka_admin import ensure_topics, input_partitions
from app.io.migrate import check_layout
from app.io.redis_store import RedisStateStore
from app.io.status import Status
from app.logs import logging_config
from app.pipeline import CLOSINGS_PER_RECORD, BatchPipeline
from app.policy import load_policy
from app.sample import demo_catalog
from app.settings import Settings

log = logging.getLogger(__name__)
EXIT_STOP_TIMEOUT = 1


class StopDeadline:
    """Exits the process `seconds` after it was asked to stop, if it has not by then.

    Faust stops its parts in turn (agents, consumer thread, producer) and waits for each; one
    of them can wait forever: a worker asked to stop (SIGTERM) under a backlog once waited past
    its benchmark's 60 s, and lived on for an hour after the broker went away. Nothing is lost
    by leaving without them: only checkpointed records were acknowledged. Before it exits the
    deadline logs the stack of every task still running (`dump`), so the log shows what was
    stuck."""

    def __init__(
        self,
        seconds: float,
        dump: Callable[[], object] = lambda: None,
        exit_: Callable[[int], object] = os._exit,
        grace_s: float = 1.0,  # for the dump to reach the log
    ) -> None:
        self.seconds = seconds
        self.dump = dump
        self.exit = exit_
        self.grace_s = grace_s
        self.timer: threading.Timer | None = None

    def start(self, why: str) -> None:
        if self.timer is not None:
            return
        log.info("stopping (%s); exiting within %g s whatever is still running", why, self.seconds)
        self.timer = threading.Timer(self.seconds, self._expired)
        self.timer.daemon = True
        self.timer.start()

    def _expired(self) -> None:
        log.critical(
            "not stopped %g s after it was asked to (TACT_STOP_TIMEOUT_S): exiting with status "
            "%d; nothing that was not checkpointed was acknowledged",
            self.seconds,
            EXIT_STOP_TIMEOUT,
        )
        try:
            self.dump()
            time.sleep(self.grace_s)
        finally:
            logging.shutdown()
            self.exit(EXIT_STOP_TIMEOUT)


def log_tasks(loop: asyncio.AbstractEventLoop) -> None:
    """Log each task of `loop` still running with its stack (no local variables: they may
    hold credentials)."""
    for task in asyncio.all_tasks(loop):
        stack = io.StringIO()
        task.print_stack(limit=12, file=stack)
        log.warning("still running: %s", stack.getvalue().strip())


class _Worker(faust.Worker):
    """Faust's worker, stopped within a deadline after a signal."""

    deadline: StopDeadline

    def _schedule_shutdown(self, signum: signal.Signals) -> None:
        self.deadline.start(signum.name)
        super()._schedule_shutdown(signum)


def build_engine(settings: Settings) -> DecisionEngine:
    """The engine on TACT_CATALOG and TACT_POLICY (the demo catalog and the built-in policy
    when unset)."""
    if settings.catalog is None:
        log.warning("TACT_CATALOG is not set: deciding on the built-in demo catalog")
        catalog = demo_catalog()
    else:
        catalog = Catalog.from_jsonl(settings.catalog)
    return DecisionEngine(catalog, load_policy(settings.policy), settings.seed)


def starting(settings: Settings) -> str:
    """The worker's first log line: what it connects to, reads, writes and keeps, in words
    (every setting is logged at debug level)."""
    s = settings
    return (
        f"starting tact {version('tact')} worker: group {s.app_id}; Kafka {s.kafka_bootstrap} "
        f"({s.kafka_security_protocol}), Redis {s.redis_shown}; reads "
        f"{' + '.join(s.input_topics)}, writes {s.topic_actions}, {s.topic_outcomes}, "
        f"{s.topic_dead_letters}"
        + (f" (made if missing, {s.topic_partitions} partitions)" if s.create_topics else "")
        + f"; local files in {s.data_dir / s.app_id}"
    )


def run_worker(settings: Settings) -> None:
    """Run until SIGTERM/SIGINT; raises DependencyUnavailable before starting if Kafka or
    Redis cannot be reached."""
    config = logging_config(settings.log_level, settings.log_format)
    logging.config.dictConfig(config)
    log.info("%s", starting(settings))
    log.debug("settings: %s", settings.redacted())
    clients.check_redis(settings)
    layout = clients.redis_client(settings, socket_connect_timeout=5, socket_timeout=10)
    try:
        check_layout(layout, settings.redis_prefix)
    finally:
        layout.close()
    if settings.create_topics:
        ensure_topics(settings)
    partitions = input_partitions(settings)
    app = build_app(settings)
    store = RedisStateStore(
        clients.redis_async(settings, socket_timeout=10, socket_connect_timeout=5),
        prefix=settings.redis_prefix,
        ttl_seconds=settings.state_ttl_days * 86400,
    )
    engine = build_engine(settings)
    if (
        clients.redis_is_cluster(settings)
        and engine.policy.learning.enabled
        and not settings.learner
    ):
        raise ConfigurationError(
            f"Redis at {settings.redis_shown} is a Redis Cluster: there the workers keep no "
            "models, one learner does; set TACT_LEARNER=true and run `tact learner` beside "
            "the workers (or turn learning off in the policy)"
        )
    log.info(
        "tact %s worker: group %s, inputs %s (%d partitions each), policy %s, catalog %s "
        "(%d products), %s; core %s; Kafka %s (%s), Redis %s",
        version("tact"),
        settings.app_id,
        " + ".join(partitions),
        next(iter(partitions.values())),
        engine.policy.version,
        settings.catalog or "the demo catalog",
        len(engine.catalog),
        (
            "learning off (the policy's learning.enabled)"
            if not engine.policy.learning.enabled
            else "a learner learns (TACT_LEARNER): this worker journals what it teaches"
            if settings.learner
            else "learning itself (one worker; several need TACT_LEARNER and tact learner)"
        ),
        CORE_BUILD,
        settings.kafka_bootstrap,
        settings.kafka_security_protocol,
        settings.redis_shown,
    )
    pipeline = BatchPipeline(
        engine,
        settings.input_topics,
        settings.max_event_bytes,
        settings.max_future_skew_s,
        partitions,
        close_limit=CLOSINGS_PER_RECORD * settings.batch_max,
    )
    attach(app, DecisionWorker(settings, store, pipeline, producer_sender(app)))
    if settings.metrics_port:
        catalog = f"{settings.catalog or 'the demo catalog'} ({len(engine.catalog):,} products)"
        tact = version("tact")

        def about() -> dict[str, str]:
            return {
                "version": tact,
                "policy": engine.policy.version,
                "catalog": catalog,
                "models": engine.models.version,
            }

        status = Status(settings, about, engine.policy.freshness.max_lag_seconds)
        status.serve(settings.metrics_port, settings.metrics_host)
    worker = _Worker(app, loglevel=settings.log_level, quiet=True, logging_config=config)
    loop: Any = worker.loop
    worker.deadline = StopDeadline(
        settings.stop_timeout_s, lambda: loop.call_soon_threadsafe(log_tasks, loop)
    )
    started = time.monotonic()
    try:
        worker.execute_from_commandline()
    finally:  # a clean stop says so (it exits through SystemExit)
        minutes = (time.monotonic() - started) / 60
        log.info("worker stopped after %.1f min: %s", minutes, metrics.processed())
