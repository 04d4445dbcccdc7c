"""Producing to and reading from the real broker with kafka-python, for the tests."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from app import codec
from app.io import clients
from app.settings import Settings
from schemas import FAMILY_OF_TYPE


def producer(target: str | Settings) -> KafkaProducer:
    """A producer to the bootstrap address, or as tact's settings say (a secured cluster)."""
    if isinstance(target, Settings):
        return clients.producer(target, linger_ms=5, max_request_size=8 * 1024 * 1024)
    return KafkaProducer(
        bootstrap_servers=target.split(","),
        acks="all",
        linger_ms=5,
        max_request_size=8 * 1024 * 1024,
    )


def produce_events(
    prod: KafkaProducer, topics: dict[str, str], events: Iterable[dict[str, Any]]
) -> int:
    """Send each event to its family's topic, keyed by customer id."""
    n = 0
    for e in events:
        prod.send(
            topics[FAMILY_OF_TYPE[e["type"]]], key=e["customer_id"].encode(), value=codec.dumps(e)
        )
        n += 1
    prod.flush()
    return n


class TopicReader:
    """Reads a topic from the beginning without a consumer group, accumulating records."""

    def __init__(self, target: str | Settings, topic: str) -> None:
        options: dict[str, Any] = {"enable_auto_commit": False, "auto_offset_reset": "earliest"}
        self.consumer = (
            clients.consumer(target, **options)
            if isinstance(target, Settings)
            else KafkaConsumer(bootstrap_servers=target.split(","), **options)
        )
        deadline = time.monotonic() + 30
        while not (parts := self.consumer.partitions_for_topic(topic)):
            if time.monotonic() > deadline:
                raise AssertionError(f"topic {topic} does not exist")
            time.sleep(0.2)
        self.consumer.assign([TopicPartition(topic, p) for p in sorted(parts)])
        self.consumer.seek_to_beginning()
        self.records: list[Any] = []

    def poll(self) -> list[Any]:
        for batch in self.consumer.poll(timeout_ms=500).values():
            self.records.extend(batch)
        return self.records

    def wait_for(
        self, done: Callable[[list[Any]], bool], timeout: float = 90.0, what: str = "records"
    ) -> list[Any]:
        deadline = time.monotonic() + timeout
        while not done(self.poll()):
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}; have {len(self.records)}")
        return self.records

    def settle(self, quiet_s: float = 3.0) -> list[Any]:
        """Keep reading until nothing new arrives for `quiet_s` seconds."""
        last, since = len(self.records), time.monotonic()
        while time.monotonic() - since < quiet_s:
            if len(self.poll()) != last:
                last, since = len(self.records), time.monotonic()
        return self.records

    def close(self) -> None:
        self.consumer.close()


def wait(condition: Callable[[], object], timeout: float, what: str, every: float = 0.2) -> None:
    """Poll `condition` every `every` seconds until it holds; fail after `timeout`."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(every)


def wait_for_actions(reader: TopicReader, ids: set[str], timeout: float, what: str) -> list[Any]:
    """Wait until every action id in `ids` is on the topic; then, once it is quiet, check that
    nothing was lost or invented and that every redelivered action is byte-identical.
    Returns the records."""
    reader.wait_for(
        lambda r: {codec.loads(x.value)["action_id"] for x in r} >= ids,
        timeout=timeout,
        what=what,
    )
    records = reader.settle()
    copies: dict[str, dict[bytes, Any]] = {}
    for r in records:
        copies.setdefault(codec.loads(r.value)["action_id"], {}).setdefault(r.value, r)
    assert set(copies) == ids  # nothing lost, nothing invented
    changed = {k: v for k, v in copies.items() if len(v) > 1}
    assert not changed, f"a redelivered action changed: {_differences(changed)}"
    return records


def _differences(changed: dict[str, dict[bytes, Any]]) -> str:
    """The fields in which each changed action's copies differ, and which worker (and epoch)
    sent each copy (the first three actions)."""
    lines = []
    for aid, by_value in list(changed.items())[:3]:
        copies = [codec.loads(v) for v in by_value]
        senders = [
            {k: v.decode() for k, v in (r.headers or []) if k.startswith("tact.")}
            for r in by_value.values()
        ]
        fields = sorted({k for c in copies for k in c if len({repr(x.get(k)) for x in copies}) > 1})
        diff = "; ".join(f"{f}={[c.get(f) for c in copies]}" for f in fields)
        lines.append(f"{aid}: sent by {senders}: {diff}")
    return f"{len(changed)} changed; " + " | ".join(lines)


def first_copies(records: list[Any]) -> list[Any]:
    """Each action's first delivery, in the order they came (copies sent again left out)."""
    firsts, seen = [], set()
    for r in records:
        if r.value not in seen:
            seen.add(r.value)
            firsts.append(r)
    return firsts
