"""The one place orjson is imported: JSON bytes in, JSON bytes out."""

from __future__ import annotations

from typing import Any

import orjson

JSONDecodeError = orjson.JSONDecodeError

_DUMP_OPTIONS = orjson.OPT_UTC_Z | orjson.OPT_NAIVE_UTC


def loads(data: bytes | str) -> Any:
    """Parse JSON; raises JSONDecodeError (a ValueError) on anything that is not JSON."""
    return orjson.loads(data)


def dumps(obj: Any) -> bytes:
    """Serialise to compact JSON bytes; datetimes become ISO-8601 UTC with a Z suffix."""
    return orjson.dumps(obj, option=_DUMP_OPTIONS)


def dumps_line(obj: Any) -> bytes:
    """Like dumps, with the newline of a JSON-lines file appended (no extra copy)."""
    return orjson.dumps(obj, option=_DUMP_OPTIONS | orjson.OPT_APPEND_NEWLINE)


def dumps_sorted(obj: Any) -> bytes:
    """Like dumps, with keys sorted: for files people diff."""
    return orjson.dumps(obj, option=_DUMP_OPTIONS | orjson.OPT_SORT_KEYS | orjson.OPT_INDENT_2)
