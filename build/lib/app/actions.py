"""Building Action records: the deterministic action id and the wire encoding."""

from __future__ import annotations

from datetime import UTC, datetime
from hashlib import blake2b
from typing import Any

from app import codec
from schemas import Action, Suppression
from schemas.types import format_event_time


def action_id(customer_id: str, event_id: str, slot: str) -> str:
    """The idempotency key of a decision: one per (customer, triggering event, slot).

    Slots name what a decision is for ("decision", "followup", "refill:<sku>"), so an event
    redelivered after a crash yields the same ids even if models moved in between.
    """
    text = "\x1f".join((customer_id, event_id, slot))
    return blake2b(text.encode("utf-8"), digest_size=16).hexdigest()


_ACTION_FIELDS = frozenset(Action.model_fields)


def build(fields: dict[str, Any]) -> Action:
    """An Action from fields the engine has already made valid, without validating again.

    What `Action.model_construct` does, minus its per-field bookkeeping: the engine makes
    thousands per second. Tests check the result equals a validated Action.
    """
    action = Action.__new__(Action)
    object.__setattr__(action, "__dict__", fields)
    object.__setattr__(action, "__pydantic_fields_set__", _ACTION_FIELDS)
    object.__setattr__(action, "__pydantic_extra__", None)
    object.__setattr__(action, "__pydantic_private__", None)
    return action


_SUPPRESSION_FIELDS = frozenset(Suppression.model_fields)


def suppression(channel: str, until: datetime) -> Suppression:
    """A Suppression built without validation (see `build`)."""
    item = Suppression.__new__(Suppression)
    object.__setattr__(item, "__dict__", {"channel": channel, "until": until})
    object.__setattr__(item, "__pydantic_fields_set__", _SUPPRESSION_FIELDS)
    object.__setattr__(item, "__pydantic_extra__", None)
    object.__setattr__(item, "__pydantic_private__", None)
    return item


def utc(t: float) -> datetime:
    return datetime.fromtimestamp(t, tz=UTC)


def encode(action: Action) -> bytes:
    """The Action as compact JSON, the same bytes in the worker and in replays."""
    return codec.dumps(as_json(action))


def encode_line(action: Action) -> bytes:
    """`encode` plus the newline of a JSON-lines file."""
    return codec.dumps_line(as_json(action))


def as_json(action: Action) -> dict[str, Any]:
    data = dict(action.__dict__)
    ts = format_event_time(action.ts)
    data["ts"] = ts
    data["not_before"] = (
        ts if action.not_before is action.ts else format_event_time(action.not_before)
    )
    data["expires_at"] = format_event_time(action.expires_at)
    if action.suppress:
        data["suppress"] = [
            {"channel": s.channel, "until": format_event_time(s.until)} for s in action.suppress
        ]
    else:
        data["suppress"] = []
    return data
