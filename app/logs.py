"""Logging set-up: JSON lines in production, readable text on a terminal.

Context (topic, partition, offset, customer, action_id, ...) travels in `extra` and becomes
fields of the JSON line.
"""

from __future__ import annotations

import logging
import sys
import time
from datetime import UTC, datetime
from typing import Any

from app import codec

_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, msg, and every `extra` field."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, tz=UTC),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                line[key] = value if isinstance(value, (str, int, float, bool)) else str(value)
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return codec.dumps(line).decode("utf-8")


class Repeats(logging.Filter):
    """At most one line per (logger, message) every `every_s` from the Kafka clients and
    Faust: with the broker gone they wrote up to 11,000 identical `Unable connect to node`
    lines a second. The first goes through at once; the next one after the interval says how
    many like it were held back (field `held_back`)."""

    PREFIXES = ("aiokafka", "kafka", "faust", "mode")

    def __init__(self, every_s: float = 30.0) -> None:
        super().__init__()
        self.every_s = every_s
        self._seen: dict[tuple[str, str], list[float]] = {}  # key -> [last shown, held back]

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith(self.PREFIXES):
            return True
        key = (record.name, record.getMessage())
        entry = self._seen.get(key)
        if entry is not None and record.created - entry[0] < self.every_s:
            entry[1] += 1
            return False
        if entry is not None and entry[1]:
            held = int(entry[1])
            record.held_back = held
            if isinstance(record.msg, str):
                record.msg = f"{record.msg} [{held} more like this held back]"
        if len(self._seen) > 1000:
            self._seen.clear()
        self._seen[key] = [record.created, 0.0]
        return True


class StartUp(logging.Filter):
    """aiokafka logs an ERROR `Group Coordinator Request failed: GroupCoordinatorNotAvailable`
    on every start (the broker elects a coordinator for a new group) and retries: nothing is
    wrong. Dropped in the first `grace_s` of the process; after that it is a WARNING (a
    coordinator missing for long is worth a look)."""

    def __init__(self, grace_s: float = 60.0) -> None:
        super().__init__()
        self.until = time.time() + grace_s

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name != "aiokafka.consumer.group_coordinator" or not str(record.msg).startswith(
            "Group Coordinator Request failed"
        ):
            return True
        error = record.args[0] if isinstance(record.args, tuple) and record.args else None
        if not getattr(error, "retriable", False):
            return True
        if record.created < self.until:
            return False
        record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


class Rebalanced(logging.Filter):
    """After a rebalance Faust logs an ERROR `Aiokafka has not sent fetch request for TP(...)
    since start` for partitions that are fetched all along (faust-streaming#629, #166: the
    worker goes on processing). Kept, as a WARNING that says so: a partition that really
    stalls shows as lag on the status page and in /health."""

    NAME = "faust.transport.drivers.aiokafka"
    START = "Aiokafka has not sent fetch request"

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name == self.NAME and self.START in str(record.msg):
            record.levelno, record.levelname = logging.WARNING, "WARNING"
            note = "a known false alarm after rebalances; real stalls show as lag"
            record.note = note
            if isinstance(record.msg, str):  # the text format shows no extra fields
                record.msg = f"{record.msg} [{note}]"
        return True


def logging_config(level: str, fmt: str) -> dict[str, Any]:
    """A dictConfig for the root logger; fmt is json, text or auto (text on a terminal)."""
    use_json = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    formatter: dict[str, Any] = (
        {"()": JsonFormatter}
        if use_json
        else {"format": "%(asctime)s %(levelname)-7s %(name)s: %(message)s"}
    )
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"main": formatter},
        "filters": {
            "repeats": {"()": Repeats},
            "start_up": {"()": StartUp},
            "rebalanced": {"()": Rebalanced},
        },
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "formatter": "main",
                "stream": sys.stderr,
                "filters": ["start_up", "rebalanced", "repeats"],
            }
        },
        "root": {"handlers": ["stderr"], "level": level.upper()},
        "loggers": {
            # The Kafka clients are chatty at INFO; their warnings still come through.
            "aiokafka": {"level": "WARNING"},
            "kafka": {"level": "WARNING"},
            # kafka-python cannot decode Faust's group member metadata and said so in a 2 KB
            # warning on every lag reading (every 15-30 s, forever); nothing is wrong.
            "kafka.admin._groups": {"level": "ERROR"},
            # kafka-python 3 warns whenever one of its tasks held the event loop over 0.1 s
            # (at start, or on a busy machine): a note for its developers, not for ops.
            "kafka.net.selector": {"level": "ERROR"},
            "faust": {"level": "WARNING" if level.lower() == "info" else level.upper()},
            "mode": {"level": "WARNING" if level.lower() == "info" else level.upper()},
        },
    }
