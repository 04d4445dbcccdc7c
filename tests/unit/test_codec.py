"""The JSON codec: bytes that hold no more memory than they say, and floats rounded for
them exactly as round() does."""

from __future__ import annotations

import math
import random
import struct
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


def bits(x: float) -> bytes:
    return struct.pack("<d", x)


def near_ties(rng: random.Random, digits: int) -> list[float]:
    """Floats at and beside (k + 1/2) / 10**digits, where rounding is decided by the last
    bits: the values round() breaks by their decimal digits."""
    k = rng.randint(-(10**6), 10**6)
    x = (k + 0.5) / 10**digits
    out = [x]
    for _ in range(3):
        out += [math.nextafter(out[-1], math.inf), math.nextafter(out[0], -math.inf)]
    return out


def test_rounded_is_round_to_the_bit() -> None:
    rng = random.Random(12)
    cases: list[tuple[float, int]] = []
    for _ in range(20_000):
        digits = rng.choice([0, 1, 2, 4, 6, 9, 12, 15])
        cases += [
            (rng.uniform(-1.0, 1.0), digits),
            (rng.uniform(-1e4, 1e4), digits),
            (rng.uniform(-1e-6, 1e-6), digits),
            (struct.unpack("<d", struct.pack("<Q", rng.getrandbits(64)))[0], digits),
        ]
        cases += [(x, digits) for x in near_ties(rng, digits)]
    specials = [0.0, -0.0, 0.5, -0.5, 1.5, 2.5, 0.125, -1e-9, 5e-324, 1e300, -1e300]
    specials += [math.inf, -math.inf, 2.0**40, -(2.0**40) + 0.5, 0.00015, 1.00005]
    cases += [(x, d) for x in specials for d in (0, 4, 6)]
    wrong = [
        (x, d, round(x, d), codec.rounded(x, d))
        for x, d in cases
        if bits(codec.rounded(x, d)) != bits(round(x, d))
    ]
    assert not wrong, wrong[:5]
    assert math.isnan(codec.rounded(math.nan, 4))
