"""The JSON codec: bytes that hold no more memory than they say."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import zstandard

from app import codec
from tests.memory import traced


def held(make: Callable[[int], bytes], n: int = 200) -> tuple[int, int]:
    """The memory traced for `n` bytes objects kept, and the sum of their sizes."""
    with traced() as memory:
        kept = [make(i) for i in range(n)]
        taken = memory()
    return taken, sum(map(sys.getsizeof, kept))


OUTCOME: dict[str, Any] = {  # an Outcome's size of JSON (850 B)
    "action_id": "343b2a47f1bef554b0014163bca113c6",
    "customer_id": "c009128",
    "status": "cancelled",
    "feedback": {},
    **{f"field_{i}": f"value {i}" * 4 for i in range(20)},
    "profit": 0.0,
}


def test_dumped_bytes_hold_no_more_memory_than_their_length() -> None:
    """orjson hands back the buffer it wrote into, never shrunk (from 3.12 at least 4 KB: 16
    KB for an Outcome). The worker holds a batch's thousands of them at once."""
    taken, size = held(lambda i: codec.dumps({**OUTCOME, "n": i}))
    assert size > 200 * 800
    assert taken < size + 8 * 1024  # (and the list)


def test_exact_copies_compressed_bytes_into_their_own_size() -> None:
    """zstd's `compress` returns bytes in an allocation of the bound it compressed into;
    the cold tier keeps a copy of their own size."""
    packer = zstandard.ZstdCompressor(level=3)
    state = codec.dumps([OUTCOME] * 4)
    taken, size = held(lambda i: codec.exact(packer.compress(state + str(i).encode())))
    assert taken < size + 8 * 1024
