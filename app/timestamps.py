"""Event and Action timestamps: parsed from ISO-8601 or epoch milliseconds, formatted as
ISO-8601 in UTC. The functions behind the contract's `EventTime` (schemas/types.py), here so
that they are compiled with the core: tact formats three timestamps per event."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Final

# Epoch milliseconds beyond year 9999 are surely a unit mistake (seconds or microseconds).
MAX_EPOCH_MS: Final = 253_402_300_799_999
MIN_EPOCH_MS: Final = 0


def parse_event_time(value: Any) -> datetime:
    """Accept ISO-8601 with a zone, or epoch milliseconds; return an aware datetime that keeps
    the offset it was given (UTC for "Z" and epoch milliseconds).

    A timestamp without a zone is refused: guessing the producer's zone silently shifts
    every time-based signal (cut-offs, caps per day, night hours).
    """
    if isinstance(value, bool):
        raise ValueError("timestamp must be ISO-8601 with a zone or epoch milliseconds, not a bool")
    if isinstance(value, int):
        if not MIN_EPOCH_MS <= value <= MAX_EPOCH_MS:
            raise ValueError(f"epoch milliseconds out of range: {value}")
        return datetime.fromtimestamp(value / 1000, tz=UTC)
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError as exc:
            raise ValueError(f"not an ISO-8601 timestamp: {value!r}") from exc
    else:
        raise ValueError("timestamp must be ISO-8601 with a zone or epoch milliseconds")
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        raise ValueError(f"timestamp has no zone: {value!r} (add Z or an offset)")
    # The offset is kept: it tells the customer's zone (quiet hours, caps per local day).
    return parsed


def event_seconds(value: Any) -> float:
    """An event or Action timestamp (ISO-8601 with a zone, or epoch milliseconds) as epoch
    seconds."""
    return parse_event_time(value).timestamp()


def format_event_time(value: datetime) -> str:
    """ISO-8601 in UTC with a Z suffix and milliseconds (truncated, as `isoformat` does).
    The date, hour and minute are formatted once per minute, the seconds and milliseconds
    read from tables: several times as fast as `isoformat`, which tact would call three times
    per event."""
    if value.tzinfo is not UTC:
        value = value.astimezone(UTC)
    minute = (
        ((value.year * 13 + value.month) * 32 + value.day) * 24 + value.hour
    ) * 60 + value.minute
    prefix = _MINUTES.get(minute)
    if prefix is None:
        if len(_MINUTES) >= _MAX_MINUTES:
            _MINUTES.clear()
        prefix = _MINUTES[minute] = (
            f"{value.year:04d}-{value.month:02d}-{value.day:02d}"
            f"T{value.hour:02d}:{value.minute:02d}:"
        )
    return prefix + _SECONDS[value.second] + _MILLISECONDS[value.microsecond // 1000]


_MINUTES: Final[dict[int, str]] = {}  # "YYYY-MM-DDTHH:MM:" by minute (a number for each)
_MAX_MINUTES: Final = 4096
_SECONDS: Final = [f"{s:02d}." for s in range(60)]  # "SS."
_MILLISECONDS: Final = [f"{ms:03d}Z" for ms in range(1000)]  # "mmmZ"


def zone_offset_minutes(value: datetime) -> int | None:
    """The customer's UTC offset when the timestamp told it, else None.

    "Z", "+00:00" and epoch milliseconds all read as "zone unknown": a producer that
    normalises to UTC looks the same as a customer in London in winter.
    """
    if value.tzinfo is UTC:  # (most events: a shortcut)
        return None
    offset = value.utcoffset()
    if offset is None or not offset:
        return None
    return int(offset.total_seconds() // 60)
