"""Which input partition owns a customer: Kafka's default partitioner (murmur2 of the key,
as the Java client and kafka-python compute it), so a worker can tell a record produced to the
wrong partition from one it owns.

A customer's events must sit on the same partition number in `clickstream` and `orders`: one
worker then owns all of them. Producers that key by `customer_id` with the Java client's or
kafka-python's default partitioner do that; librdkafka's default (`consistent_random`, CRC32)
does not, and must be set to `murmur2_random`.
"""

from __future__ import annotations

_SEED = 0x9747B28C
_M = 0x5BD1E995
_MASK = 0xFFFFFFFF


def murmur2(data: bytes) -> int:
    """MurmurHash2 as org.apache.kafka.common.utils.Utils.murmur2 computes it (unsigned)."""
    length = len(data)
    h = (_SEED ^ length) & _MASK
    whole = length - length % 4
    for i in range(0, whole, 4):
        k = data[i] | data[i + 1] << 8 | data[i + 2] << 16 | data[i + 3] << 24
        k = (k * _M) & _MASK
        k ^= k >> 24
        k = (k * _M) & _MASK
        h = ((h * _M) & _MASK) ^ k
    rest = length % 4
    if rest >= 3:
        h ^= data[whole + 2] << 16
    if rest >= 2:
        h ^= data[whole + 1] << 8
    if rest >= 1:
        h ^= data[whole]
        h = (h * _M) & _MASK
    h ^= h >> 13
    h = (h * _M) & _MASK
    h ^= h >> 15
    return h


def partition_of(customer_id: str, partitions: int) -> int:
    """The partition Kafka's default partitioner gives a record keyed by `customer_id`."""
    return (murmur2(customer_id.encode("utf-8")) & 0x7FFFFFFF) % partitions
