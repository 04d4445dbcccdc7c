"""The global control group: a deterministic share of customers, drawn by hash."""

from __future__ import annotations

from hashlib import blake2b
from typing import Final

_SCALE: Final = float(2**64)


def holdout_draw(customer_id: str, salt: str) -> float:
    """A number in [0, 1) fixed by customer and salt: the same on every machine and run."""
    digest = blake2b(f"{salt}\x1f{customer_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / _SCALE


def in_holdout(customer_id: str, salt: str, share: float) -> bool:
    return share > 0 and holdout_draw(customer_id, salt) < share
