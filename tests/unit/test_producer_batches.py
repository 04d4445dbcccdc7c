"""The worker's records to aiokafka's producer a batch per topic-partition
(agents/decide.py `send_batched`), against a stand-in producer that keeps aiokafka's own
batches (no broker: what it would send, where)."""

from __future__ import annotations

import asyncio
from typing import Any

from aiokafka.producer.message_accumulator import BatchBuilder
from aiokafka.record.memory_records import MemoryRecords

from agents.decide import send_batched
from agents.worker import OutRecord
from app.partitioning import partition_of


class Producer:
    """aiokafka's producer as `send_batched` uses it: its batches are aiokafka's, of
    `batch_size` bytes; `led` are the partitions with a leader."""

    def __init__(self, partitions: int, batch_size: int, led: set[int] | None = None) -> None:
        self.partitions = set(range(partitions))
        self.batch_size = batch_size
        self.led = self.partitions if led is None else led
        self.sent: list[tuple[str, int, list[tuple[bytes | None, bytes | None]]]] = []
        self.client = self  # (client.cluster.available_partitions_for_topic)
        self.cluster = self

    async def partitions_for(self, topic: str) -> set[int]:
        return self.partitions

    def available_partitions_for_topic(self, topic: str) -> set[int]:
        return self.led

    def create_batch(self) -> BatchBuilder:
        return BatchBuilder(self.batch_size, 0, is_transactional=False)

    async def send_batch(self, batch: BatchBuilder, topic: str, *, partition: int) -> Any:
        records = MemoryRecords(bytes(batch._build())).next_batch()
        self.sent.append((topic, partition, [(r.key, r.value) for r in records]))
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done


def sent(producer: Producer, records: list[OutRecord]) -> int:
    async def run() -> int:
        deliveries = await send_batched(producer, records)
        await asyncio.gather(*deliveries)
        return len(deliveries)

    return asyncio.run(run())


def test_each_record_goes_to_its_keys_partition_in_order_whatever_the_batches() -> None:
    """Kafka's default partitioner (murmur2 of the key, as app/partitioning.py and every
    Java client), a customer's records in the order given, however many batches a
    topic-partition takes; nothing lost, nothing twice."""
    records: list[OutRecord] = [
        (topic, f"c{i % 37}".encode(), f"{topic}-{i}".encode() * 8, [("tact.worker", b"w")])
        for i in range(600)
        for topic in ("actions", "outcomes")
    ]
    producer = Producer(partitions=6, batch_size=2048)
    deliveries = sent(producer, records)
    assert deliveries == len(producer.sent) > 12  # (full batches sent on the way)
    got: dict[tuple[str, bytes | None], list[bytes | None]] = {}
    for topic, partition, batch in producer.sent:
        for key, value in batch:
            assert key is not None
            assert partition == partition_of(key.decode(), 6)
            got.setdefault((topic, key), []).append(value)
    want: dict[tuple[str, bytes | None], list[bytes | None]] = {}
    for topic, key, value, _ in records:
        want.setdefault((topic, key), []).append(value)
    assert got == want


def test_a_record_bigger_than_a_batch_goes_alone_and_a_keyless_one_where_a_leader_is() -> None:
    """A dead letter of a big input record fills a batch of its own; one of a record with
    neither key nor value is still sent (aiokafka's `send` refuses it: a batch retried until
    the worker gave up), to a partition with a leader, as `send` would choose."""
    big = b"x" * 10_000
    records: list[OutRecord] = [
        ("dead", b"c1", b"small", None),
        ("dead", b"c1", big, None),
        ("dead", b"c1", b"after", None),
        ("dead", None, None, [("tact.dlq.reason", b"not_json")]),
    ]
    producer = Producer(partitions=6, batch_size=1024, led={4})
    sent(producer, records)
    mine = partition_of("c1", 6)
    assert [(p, [v for _, v in batch]) for _, p, batch in producer.sent if p == mine] == [
        (mine, [b"small"]),
        (mine, [big]),
        (mine, [b"after"]),
    ]
    assert [(p, batch) for _, p, batch in producer.sent if p != mine] == [(4, [(None, None)])]
