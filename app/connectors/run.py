"""`tact connector run NAME`: the SDK's runner on Kafka and Redis, until stopped."""

from __future__ import annotations

import hashlib
import logging
import signal
import threading
import time
from typing import Any

import redis

from app import codec
from app.connectors.sdk import Connector, Runner
from app.errors import ConfigurationError
from app.io import clients
from app.io.kafka_admin import ensure_topics
from app.settings import Settings

log = logging.getLogger(__name__)
STATS_EVERY_S = 300.0  # how often a running connector logs its counts


CLAIM_S = 30.0  # a connector's name stays claimed this long after its last instance stops


def group_of(connector: Connector) -> str:
    return f"tact-connector-{connector.name}"


def fingerprint(connector: Connector) -> str:
    """What makes two connectors the same configuration: their kind, channels and target
    (hashed: a URL may carry a token). Instances of one configuration share a group safely;
    two configurations under one name would split its Actions between them."""
    target = str(getattr(connector, "url", ""))
    digest = hashlib.sha256(target.encode()).hexdigest()[:12] if target else "-"
    return f"{type(connector).__name__}|{','.join(sorted(connector.channels))}|{digest}"


# Renew the claim only while this configuration holds it (or it has lapsed): never over
# another configuration's.
_RENEW = """
local held = redis.call('GET', KEYS[1])
if held == false or held == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
  return 1
end
return 0
"""


class Claim:
    """The connector's name, claimed in Redis for its configuration while it runs (renewed
    from a thread of its own, so a slow delivery cannot let it lapse)."""

    def __init__(self, store: Any, prefix: str, connector: Connector) -> None:
        self.store = store
        self.key = f"{prefix}:connector:{connector.name}:claim"
        self.mine = fingerprint(connector)
        self.name = connector.name
        self.lost = False
        self._renew = store.register_script(_RENEW)

    def take(self) -> None:
        """Claim the name, or refuse when another configuration holds it."""
        if not self.renew():
            held = self.store.get(self.key) or b"?|?|?"
            kind, channels, _ = held.decode().split("|")
            raise ConfigurationError(
                f"connector name {self.name!r} is running with another configuration "
                f"({kind}, channels {channels}, or another --url): one consumer group "
                "would split the Actions between them and each would drop the other's "
                "channels. Give this one its own --name (or, if the other has stopped, "
                f"start again in {CLAIM_S:.0f} s)"
            )

    def renew(self) -> bool:
        return bool(self._renew(keys=[self.key], args=[self.mine, int(CLAIM_S)]))

    def keep(self, stop: threading.Event) -> None:
        """Renew until `stop`; if another configuration took the name meanwhile (this one
        could not reach Redis for the claim's lifetime), say so and stop."""

        def run() -> None:
            while not stop.wait(CLAIM_S / 3):
                try:
                    held = self.renew()
                except redis.RedisError as exc:
                    log.warning("connector %s: cannot renew its name: %s", self.name, exc)
                    continue
                if not held:
                    log.error(
                        "connector %s: another configuration took the name; stopping",
                        self.name,
                    )
                    self.lost = True
                    stop.set()
                    return

        threading.Thread(target=run, name="tact-connector-claim", daemon=True).start()


def run(
    settings: Settings,
    connector: Connector,
    stop: threading.Event | None = None,
    retry_for_s: float = 6 * 3600.0,
) -> None:
    """Consume `actions` in the connector's own group and deliver until `stop` (or SIGTERM /
    SIGINT); a delivery that keeps failing is tried again for `retry_for_s`."""
    stop = stop if stop is not None else threading.Event()
    # The handler only notes the signal: Event.set() takes a lock, and a second signal
    # arriving inside the first handler's set() (`timeout` signals the process and its group
    # at once) deadlocked the main thread on it. The loop below sets `stop` when it sees one.
    signalled: list[int] = []
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda number, _frame: signalled.append(number))
    ensure_topics(settings)
    producer = clients.producer(settings, linger_ms=5)
    consumer = clients.consumer(
        settings,
        settings.topic_actions,
        group_id=group_of(connector),
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_records=200,
        session_timeout_ms=int(settings.session_timeout_s * 1000),
        heartbeat_interval_ms=int(max(1.0, settings.session_timeout_s / 4) * 1000),
    )
    clients.check_redis(settings)
    store = clients.redis_client(settings)
    claim = Claim(store, f"tact:{settings.app_id}", connector)
    claim.take()
    claim.keep(stop)

    def dead_letter(key: bytes | None, value: bytes, headers: dict[str, str]) -> None:
        log.warning(
            "connector %s: Action %s is a dead letter on %s: %s%s",
            connector.name,
            _named(key, headers),
            settings.topic_connector_dead_letters,
            headers.get("reason", "?"),
            f" (after {headers['attempts']} attempts)" if "attempts" in headers else "",
        )
        producer.send(
            settings.topic_connector_dead_letters,
            key=key,
            value=value,
            headers=[(f"tact.dlq.{k}", v.encode()) for k, v in headers.items()],
        )

    def receipt(event: dict[str, Any]) -> None:
        producer.send(
            settings.topic_clickstream,
            key=str(event["customer_id"]).encode(),
            value=codec.dumps(event),
        )

    runner = Runner(
        connector, store, dead_letter, prefix=f"tact:{settings.app_id}", retry_for_s=retry_for_s
    )
    log.info("connector %s delivering %s", connector.name, ", ".join(sorted(connector.channels)))
    said = time.monotonic()
    try:
        while not stop.is_set():
            if signalled:
                stop.set()
                break
            if time.monotonic() - said >= STATS_EVERY_S:  # what it did so far, in words
                log.info("connector %s so far: %s", connector.name, runner.stats.line())
                said = time.monotonic()
            batch = consumer.poll(timeout_ms=500)
            for tp, records in batch.items():
                for record in records:
                    if record.value is not None:
                        runner.handle(record.key, record.value, tp.partition, record.timestamp)
            producer.flush()  # dead letters are durable before the commit
            if batch:
                consumer.commit()
            # Now that the batch is handled: which partitions are read to their end.
            runner.caught_up = {
                tp.partition
                for tp in consumer.assignment()
                if (end := consumer.highwater(tp)) is not None and consumer.position(tp) >= end
            }
            runner.deliver_due(sorted(tp.partition for tp in consumer.assignment()))
            producer.flush()
            runner.drain_receipts(receipt, producer.flush)
    finally:
        log.info("connector %s stopping: %s", connector.name, runner.stats.line())
        consumer.close()
        producer.close()
    if claim.lost:
        raise ConfigurationError(
            f"connector name {connector.name!r} was taken by another configuration while "
            "this one could not renew it: give each configuration its own --name"
        )


def _named(key: bytes | None, headers: dict[str, str]) -> str:
    """The dead letter's Action and customer (the record's key), for a log line."""
    customer = key.decode(errors="replace") if key else "unknown"
    return f"{headers.get('action_id', '(not an Action)')} (customer {customer})"
