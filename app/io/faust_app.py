"""The Faust application: consumer group, producer and broker settings from tact's Settings."""

from __future__ import annotations

import faust

from app.errors import ConfigurationError
from app.io import clients
from app.io.kafka_admin import MIB, topic_specs
from app.settings import Settings


def build_app(settings: Settings) -> faust.App:
    """A Faust app for the worker. Records stay raw bytes: tact decodes them itself
    (orjson + pydantic is 4x cheaper than Faust records, and bad input must become a dead
    letter, not a codec exception)."""
    datadir = settings.data_dir / settings.app_id
    try:
        datadir.mkdir(parents=True, exist_ok=True)  # Faust makes only the last level
    except OSError as exc:
        raise ConfigurationError(
            f"TACT_DATA_DIR={settings.data_dir}: cannot create {datadir} ({exc.strerror})"
        ) from None
    dead_letter_limit = int(topic_specs(settings)[settings.topic_dead_letters]["max.message.bytes"])
    return clients.faust_app(
        settings,
        datadir=str(datadir),  # not ./<app id>-data wherever it runs
        store="memory://",
        autodiscover=False,
        web_enabled=False,
        processing_guarantee="at_least_once",
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=settings.session_timeout_s,
        broker_heartbeat_interval=max(1.0, settings.session_timeout_s / 4),
        broker_commit_interval=1.0,
        # A rebalance or a stop does not wait for the batch in flight to be acknowledged:
        # one that is fenced (agents/worker.py) never will be, and Faust would wait forever.
        # A batch caught by a rebalance is not acknowledged; its records are handled again by
        # the partitions' next owner, from the checkpoint.
        stream_wait_empty=False,
        producer_acks=-1,
        producer_request_timeout=settings.producer_timeout_s,
        producer_max_request_size=dead_letter_limit + MIB,
        consumer_max_fetch_size=fetch_size(settings),
        topic_partitions=settings.topic_partitions,
        topic_replication_factor=settings.topic_replication,
    )


def fetch_size(settings: Settings) -> int:
    """What a fetch brings of each topic-partition at most. The worker folds a few hundred
    records a batch: more only waits in memory, decoded (with 4 MiB, a backlog of 12
    topic-partitions held 210 MiB more before the first batch than with 512 KiB;
    Performance). At least a valid event's batch: a broker hands a batch over the limit only
    to the first partition of a fetch that has records, so a bigger one could wait fetches
    long, and hold the other topic of its partition back (agents/align.py)."""
    return max(MIB // 2, settings.max_event_bytes + 64 * 1024)
