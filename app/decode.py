"""Turn one raw record (bytes) into a validated event, or say exactly why not.

Every way a record can be unusable has a reason code, used in dead letters and metrics:

    too_large     the record is over the size limit
    not_json      the bytes are not UTF-8 JSON
    not_object    JSON, but not an object
    unknown_type  no `type`, or a type tact does not know
    wrong_topic   a known type on the other topic (e.g. order_placed on clickstream)
    schema        the event breaks its type's schema (the detail lists each field error)
"""

from __future__ import annotations

from typing import Any, Final, cast

from pydantic import ValidationError

from app import codec
from app.errors import BadInput
from app.timestamps import event_seconds
from schemas import EVENT_MODELS, FAMILY_OF_TYPE, Envelope, TopicFamily

DEFAULT_MAX_EVENT_BYTES: Final = 1024 * 1024
_DETAIL_LIMIT: Final = 1000

EARLIEST: Final = float("-inf")

REASONS: Final = ("too_large", "not_json", "not_object", "unknown_type", "wrong_topic", "schema")


def decode_event(
    raw: bytes | None,
    family: TopicFamily | None = None,
    max_bytes: int = DEFAULT_MAX_EVENT_BYTES,
) -> Envelope:
    """Validate `raw` as an event; `family` is the topic it came from, when known."""
    if raw is None:
        raise BadInput("not_json", "the record has no value (a tombstone)")
    if len(raw) > max_bytes:
        raise BadInput("too_large", f"{len(raw)} bytes is over the limit of {max_bytes}")
    try:
        obj = codec.loads(raw)
    except codec.JSONDecodeError as exc:
        raise BadInput("not_json", str(exc)) from None
    return validate_object(obj, family)


def event_time(raw: bytes | None) -> float:
    """The event time (epoch seconds) in a record's bytes, read as decoding will, without
    validating the rest (to put records in event order before they are decoded); EARLIEST when
    there is none (such a record is a dead letter once decoded: it has no time)."""
    try:
        return event_seconds(codec.loads(raw)["ts"])  # type: ignore[arg-type]
    except Exception:  # (not JSON, not an object, no ts, not a time: all the same here)
        return EARLIEST


def validate_object(obj: Any, family: TopicFamily | None = None) -> Envelope:
    """Validate an already parsed JSON value as an event."""
    if not isinstance(obj, dict):
        raise BadInput("not_object", f"expected a JSON object, got {type(obj).__name__}")
    event_type = obj.get("type")
    if not isinstance(event_type, str) or event_type not in EVENT_MODELS:
        shown = "missing" if event_type is None else repr(event_type)[:100]
        raise BadInput("unknown_type", f"type is {shown}; known types: {', '.join(EVENT_MODELS)}")
    model = EVENT_MODELS[event_type]
    if family is not None and FAMILY_OF_TYPE[event_type] != family:
        raise BadInput(
            "wrong_topic",
            f"{event_type} belongs on {FAMILY_OF_TYPE[event_type]}, not on {family}",
        )
    customer_id = obj.get("customer_id")
    if type(customer_id) is str:
        # One string per customer, whatever number of events name them: the worker's maps
        # (states, cold bytes, partitions, the attribution schedule) all key on it, and kept
        # each event's own copy, one per map, for as long as the customer stays in memory.
        obj["customer_id"] = codec.shared(customer_id)
    try:
        # The model's own validator: what model_validate runs, without its per-call overhead.
        return cast(Envelope, model.__pydantic_validator__.validate_python(obj))
    except ValidationError as exc:
        raise BadInput("schema", describe_validation_error(exc)) from None


def describe_validation_error(exc: ValidationError, whole: str = "(event)") -> str:
    """One line per field error, `path: message` (`whole` for the record as a whole), capped
    in length."""
    parts = []
    for error in exc.errors(include_url=False, include_input=False):
        path = ".".join(str(p) for p in error["loc"]) or whole
        parts.append(f"{path}: {error['msg'].removeprefix('Value error, ')}")
    text = "; ".join(parts)
    return text if len(text) <= _DETAIL_LIMIT else text[: _DETAIL_LIMIT - 3] + "..."
