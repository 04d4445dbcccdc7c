"""argparse types for options with a range: a wrong value is a usage error naming the option,
never a traceback or a silent nothing."""

from __future__ import annotations

import argparse
import math
import re
from collections.abc import Callable

# How --since and --until read a time, for their help.
TIME_FORMS = (
    "ISO-8601 with a zone (2026-03-02T09:00Z, or an offset: 2026-03-02T10:00+01:00); a bare "
    "date is 00:00 UTC; a time without a zone is refused, never guessed"
)


def at_least(low: int) -> Callable[[str], int]:
    """An argparse type: an integer of at least `low`."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"{value} is below {low}")
        return value

    return parse


def _number(text: str, ok: Callable[[float], bool], should: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value) or not ok(value):
        raise argparse.ArgumentTypeError(f"{text} is not {should}")
    return value


def margin_rate(text: str) -> float:
    """An argparse type: a gross margin rate, from 0 up to (not including) 1."""
    return _number(text, lambda v: 0.0 <= v < 1.0, "a margin rate from 0 to below 1")


def non_negative(text: str) -> float:
    """An argparse type: a number of at least 0."""
    return _number(text, lambda v: v >= 0, "0 or more")


def id_prefix(text: str) -> str:
    """An argparse type: the start of generated ids (letters, digits, '-', '_', '.')."""
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,31}", text):
        raise argparse.ArgumentTypeError(
            f"{text!r}: 1-32 letters, digits, '.', '_' or '-', starting with a letter or digit"
        )
    return text


def positive(text: str) -> float:
    """An argparse type: a number above 0."""
    return _number(text, lambda v: v > 0, "above 0")
