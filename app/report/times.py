"""Timestamps of Action and Outcome records (ISO-8601 with Z) as epoch seconds."""

from __future__ import annotations

from datetime import datetime


def epoch(value: str | int | float) -> float:
    if isinstance(value, int | float):
        return float(value) / 1000.0
    return datetime.fromisoformat(value).timestamp()
