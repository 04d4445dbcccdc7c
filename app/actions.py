"""Building Action and Outcome records: the deterministic action id and the wire encoding."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from functools import lru_cache
from hashlib import blake2b
from typing import Any, Final, TypeVar

from app import codec
from app.timestamps import format_event_time
from schemas import Action, Outcome, QuietHours, Suppression


def relation_of(reasons: Iterable[str], play: str) -> str:
    """The offer relation an Action's reasons name (`offer:<relation>`)."""
    for reason in reasons:
        if reason.startswith("offer:"):
            return reason[len("offer:") :]
    return "self" if play == "assist" else "accessories"


# Channels that reach the customer outside the store (the policy marks them `outbound`).
MESSAGE_CHANNELS: Final = frozenset({"email", "sms", "paid_retargeting"})
_SHOWN_MESSAGE: Final = frozenset({"delivered", "open", "impression", "click", "accept"})
_SHOWN_ONSITE: Final = frozenset({"impression", "click", "accept"})


def was_shown(
    channel: str, feedback: Iterable[str], outbound: frozenset[str] = MESSAGE_CHANNELS
) -> bool:
    """Whether feedback says a delivered Action reached the customer's eyes: a message once
    delivered; on the store's own surfaces only the storefront's impression, click or accept
    (a connector's `delivered` there means stored for the page, not seen)."""
    kinds = _SHOWN_MESSAGE if channel in outbound else _SHOWN_ONSITE
    return any(kind in kinds for kind in feedback)


@lru_cache(maxsize=64)  # a decision asks for its id several times
def action_id(customer_id: str, event_id: str, slot: str) -> str:
    """The idempotency key of a decision: one per (customer, triggering event, slot).

    Slots name what a decision is for ("decision", "followup", "refill:<sku>"), so an event
    redelivered after a crash yields the same ids even if models moved in between.
    """
    text = "\x1f".join((customer_id, event_id, slot))
    return blake2b(text.encode("utf-8"), digest_size=16).hexdigest()


_ACTION_FIELDS: Final = frozenset(Action.model_fields)


def build(fields: dict[str, Any]) -> Action:
    """An Action from fields the engine has already made valid, without validating again.

    What `Action.model_construct` does, minus its per-field bookkeeping: the engine makes
    thousands per second. Tests check the result equals a validated Action.
    """
    return _construct(Action, fields, _ACTION_FIELDS)


_SUPPRESSION_FIELDS: Final = frozenset(Suppression.model_fields)
_QUIET_FIELDS: Final = frozenset(QuietHours.model_fields)
_OUTCOME_FIELDS: Final = frozenset(Outcome.model_fields)


def suppression(channel: str, until: datetime) -> Suppression:
    """A Suppression built without validation (see `build`)."""
    return _construct(Suppression, {"channel": channel, "until": until}, _SUPPRESSION_FIELDS)


@lru_cache(maxsize=256)
def quiet_hours(start: int, end: int, utc_offset_minutes: int) -> QuietHours:
    """The quiet hours an outbound Action carries, built without validation (see `build`)."""
    fields = {"start": start, "end": end, "utc_offset_minutes": utc_offset_minutes}
    return _construct(QuietHours, fields, _QUIET_FIELDS)


def after_quiet(at: float, utc_offset_minutes: int, start: int, end: int) -> float:
    """`at` (epoch seconds) if it falls outside the local quiet hours [start, end) (wrapping
    past midnight when start > end), else the moment they end. The one rule for the engine
    (when to schedule) and connectors (whether they may deliver now)."""
    local_hour = ((at + utc_offset_minutes * 60) % 86400.0) / 3600.0
    inside = (start <= local_hour or local_hour < end) if start > end else start <= local_hour < end
    if not inside:
        return at
    return at + ((end - local_hour) % 24) * 3600.0


def build_outcome(fields: dict[str, Any]) -> Outcome:
    """An Outcome built without validation (see `build`; tests validate them)."""
    return _construct(Outcome, fields, _OUTCOME_FIELDS)


M = TypeVar("M")


def _construct(model: type[M], fields: dict[str, Any], names: frozenset[str]) -> M:
    item = model.__new__(model)
    object.__setattr__(item, "__dict__", fields)
    object.__setattr__(item, "__pydantic_fields_set__", names)
    object.__setattr__(item, "__pydantic_extra__", None)
    object.__setattr__(item, "__pydantic_private__", None)
    return item


def utc(t: float) -> datetime:
    return datetime.fromtimestamp(t, tz=UTC)


def encode(action: Action) -> bytes:
    """The Action as compact JSON, the same bytes in the worker and in replays."""
    return codec.dumps(as_json(action))


def expire_stale(
    action: Action, close_channels: frozenset[str], deny_frames: frozenset[str]
) -> Action:
    """The Action as a worker that reached its event too late sends it: an offer on a surface
    the customer has left (`close_channels`) or in an urgency frame (`deny_frames`) gets
    `not_before` and `expires_at` set to its decision time, already past, so no connector
    delivers it, and reason `stale`. Everything else is the engine's decision unchanged: the
    same `action_id`, and the engine's state the same whether the event was late or not."""
    if action.play == "protect" or action.holdout:
        return action
    if action.channel not in close_channels and action.frame not in deny_frames:
        return action
    fields = dict(action.__dict__)
    fields["not_before"] = fields["expires_at"] = action.ts
    fields["reasons"] = [*action.reasons, "stale"]
    return build(fields)


def encode_line(action: Action) -> bytes:
    """`encode` plus the newline of a JSON-lines file."""
    return codec.dumps_line(as_json(action))


def encode_outcome_line(outcome: Outcome) -> bytes:
    """An Outcome as one line of JSON (times in UTC with a Z)."""
    return codec.dumps_line(outcome_json(outcome))


def encode_outcome(outcome: Outcome) -> bytes:
    return codec.dumps(outcome_json(outcome))


def outcome_json(outcome: Outcome) -> dict[str, Any]:
    data = dict(outcome.__dict__)
    decided, start = outcome.decided_at, outcome.window_start
    end, closed = outcome.window_end, outcome.closed_at
    data["decided_at"] = format_event_time(decided)
    # a window mostly starts when decided and closes at its end (the same objects then:
    # app/attribution.py): each time formatted once
    data["window_start"] = data["decided_at"] if start is decided else format_event_time(start)
    data["window_end"] = format_event_time(end)
    data["closed_at"] = data["window_end"] if closed is end else format_event_time(closed)
    return data


def as_json(action: Action) -> dict[str, Any]:
    data = dict(action.__dict__)
    ts = format_event_time(action.ts)
    data["ts"] = ts
    data["not_before"] = (
        ts if action.not_before is action.ts else format_event_time(action.not_before)
    )
    data["expires_at"] = format_event_time(action.expires_at)
    if action.quiet_hours is not None:
        data["quiet_hours"] = dict(action.quiet_hours.__dict__)
    if action.suppress:
        data["suppress"] = [
            {"channel": s.channel, "until": format_event_time(s.until)} for s in action.suppress
        ]
    else:
        data["suppress"] = []
    return data
