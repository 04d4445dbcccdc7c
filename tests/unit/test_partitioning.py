"""Our murmur2 is Kafka's: the same partition as kafka-python's default partitioner."""

from __future__ import annotations

import random

from kafka.partitioner.default import murmur2 as kafka_murmur2

from app.partitioning import murmur2, partition_of


def test_murmur2_is_the_java_clients() -> None:
    rng = random.Random(7)
    keys = [b"", b"a", b"ab", b"abc", b"abcd", "cust-é".encode()]
    keys += [bytes(rng.randrange(256) for _ in range(rng.randrange(40))) for _ in range(500)]
    for key in keys:
        assert murmur2(key) == kafka_murmur2(key), key
    # Known values from the Java client's tests (Utils.murmur2 as a signed int).
    assert murmur2(b"21") == -973932308 & 0xFFFFFFFF
    assert murmur2(b"foobar") == -790332482 & 0xFFFFFFFF


def test_partition_of_spreads_customers() -> None:
    counts = [0] * 6
    for i in range(6000):
        counts[partition_of(f"customer-{i}", 6)] += 1
    assert min(counts) > 800
