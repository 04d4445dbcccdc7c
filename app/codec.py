"""The one place orjson is imported: JSON bytes in, JSON bytes out; and one copy of the
strings read from it that many objects repeat (`shared`)."""

from __future__ import annotations

import math
import sys
import sysconfig
from typing import Any, Final

import orjson

JSONDecodeError = orjson.JSONDecodeError

_DUMP_OPTIONS: Final = orjson.OPT_UTC_Z | orjson.OPT_NAIVE_UTC


def loads(data: bytes | str) -> Any:
    """Parse JSON; raises JSONDecodeError (a ValueError) on anything that is not JSON."""
    return orjson.loads(data)


def dumps(obj: Any) -> bytes:
    """Serialise to compact JSON bytes; datetimes become ISO-8601 UTC with a Z suffix. The
    bytes hold no more memory than their length (`exact`): they may be held by the thousand
    (a worker's batch of records to send, its states to checkpoint)."""
    return exact(orjson.dumps(obj, option=_DUMP_OPTIONS))


def dumps_line(obj: Any) -> bytes:
    """Like dumps, with the newline of a JSON-lines file appended, for a line written at
    once: not copied (`exact`), so not to be held."""
    return orjson.dumps(obj, option=_DUMP_OPTIONS | orjson.OPT_APPEND_NEWLINE)


def dumps_sorted(obj: Any) -> bytes:
    """Like dumps, with keys sorted: for files people diff."""
    return orjson.dumps(obj, option=_DUMP_OPTIONS | orjson.OPT_SORT_KEYS | orjson.OPT_INDENT_2)


def exact(data: bytes) -> bytes:
    """`data` copied into an allocation of its own size. orjson returns bytes in the buffer
    it wrote them into, grown by doubling and never shrunk (ijl/orjson's `BytesWriter.finish`;
    from 3.12 at least 4 KB: an Outcome's 850 B of JSON held 16 KB, 2 KB with 3.11), and
    zstd's `compress` in one of the bound it compressed into: a worker sending a batch's
    3,700 Actions and Outcomes held 55 MiB for their 3 MiB (README "orjson's buffers"). The
    copy costs about 0.15 us."""
    return bytes(memoryview(data))


def strings_can_be_shared(version: tuple[int, int, int], free_threaded: bool) -> bool:
    """Whether `sys.intern` lets a string go once nothing holds it. Not on Python 3.12.0 to
    3.12.5, nor on free-threaded builds, where interned strings are immortal (cpython
    #113993): there, interning every customer id read would keep each one forever."""
    return not (free_threaded or (3, 12, 0) <= version < (3, 12, 6))


SHARING: Final = strings_can_be_shared(
    (sys.version_info[0], sys.version_info[1], sys.version_info[2]),
    bool(sysconfig.get_config_var("Py_GIL_DISABLED")),
)


def shared(text: str) -> str:
    """One copy of `text` for every holder of an equal string (customer ids, a window's play
    or SKU): `sys.intern`'s, where interned strings are freed when no longer held."""
    return sys.intern(text) if SHARING else text


_TENS: Final = [10.0**n for n in range(16)]  # each exact as a float
_BOUND: Final = 2.0**50  # |x * 10**digits| below this: the fast path of `rounded`


def rounded(x: float, digits: int) -> float:
    """`round(x, digits)` for a float (not an int: this gives 5.0 for 5, round gives 5) and
    0 <= digits < 16: the same float, in about a quarter of the time (round formats the
    decimal digits and parses them back: 5% of a replay's time, in the Actions' and Outcomes'
    figures).

    y = x * 10**digits is the exact product rounded, and rounding is monotonic: as k + 1/2 is
    a float (|y| < 2**50), y is below it when the exact product is, and above it when that
    is. So the product rounds to the same integer as y, and k / 10**digits is the float
    nearest that decimal, as round's result is (k and 10**digits are exact floats, and a
    division is correctly rounded). y - floor(y) is exact (Sterbenz's lemma; fl(y + 1) for
    -1 < y < 0, monotonic too). At a half exactly (a tie, or a product that rounded onto
    one: round decides by the exact decimal), beyond the bound, for nan and infinities:
    round() itself."""
    scale = _TENS[digits]
    y = x * scale
    if -_BOUND < y < _BOUND:
        k = math.floor(y)
        fraction = y - k
        if fraction < 0.5:
            result = k / scale
        elif fraction > 0.5:
            result = (k + 1) / scale
        else:
            return round(x, digits)
        return result if result != 0.0 else math.copysign(0.0, x)  # (round keeps -0.0)
    return round(x, digits)
