"""The event and Action contract: what is accepted, what is refused, and how times parse."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta, timezone

import pytest
from pydantic import ValidationError

from schemas import EVENT_MODELS, FAMILY_OF_TYPE, Action
from schemas.types import format_event_time, zone_offset_minutes
from tests.samples import ENVELOPE, INVALID, MINIMAL, VALID, event


def test_every_type_has_samples() -> None:
    assert set(VALID) == set(MINIMAL) == set(INVALID) == set(EVENT_MODELS)
    assert len(EVENT_MODELS) == 17


def test_topic_families() -> None:
    orders = {t for t, f in FAMILY_OF_TYPE.items() if f == "orders"}
    assert orders == {
        "order_placed",
        "order_returned",
        "refund",
        "subscription_started",
        "subscription_cancelled",
    }


@pytest.mark.parametrize("event_type", sorted(VALID))
def test_valid_event_is_accepted(event_type: str) -> None:
    parsed = EVENT_MODELS[event_type].model_validate(event(event_type))
    assert parsed.type == event_type
    assert parsed.customer_id == "cust-1"
    assert parsed.ts == datetime(2026, 11, 2, 9, 15, tzinfo=UTC)


@pytest.mark.parametrize("event_type", sorted(MINIMAL))
def test_minimal_event_is_accepted(event_type: str) -> None:
    raw = {"event_id": "e", "type": event_type, "customer_id": "c", "ts": 0, **MINIMAL[event_type]}
    assert EVENT_MODELS[event_type].model_validate(raw).session_id is None


@pytest.mark.parametrize(
    ("event_type", "change", "path"),
    [(t, change, path) for t, cases in sorted(INVALID.items()) for change, path in cases],
)
def test_invalid_event_names_the_field(event_type: str, change: dict, path: str) -> None:
    with pytest.raises(ValidationError) as info:
        EVENT_MODELS[event_type].model_validate(event(event_type, **change))
    locs = {".".join(str(p) for p in e["loc"]) for e in info.value.errors()}
    assert path in locs


@pytest.mark.parametrize("field", ["event_id", "customer_id", "ts", "type"])
@pytest.mark.parametrize("event_type", ["page_view", "order_placed"])
def test_envelope_fields_are_required(event_type: str, field: str) -> None:
    raw = event(event_type)
    del raw[field]
    with pytest.raises(ValidationError):
        EVENT_MODELS[event_type].model_validate(raw)


@pytest.mark.parametrize(
    ("customer_id", "ok"), [("", False), ("x", True), ("x" * 256, True), ("x" * 257, False)]
)
def test_customer_id_length(customer_id: str, ok: bool) -> None:
    raw = event("page_view", customer_id=customer_id)
    if ok:
        assert EVENT_MODELS["page_view"].model_validate(raw).customer_id == customer_id
    else:
        with pytest.raises(ValidationError):
            EVENT_MODELS["page_view"].model_validate(raw)


@pytest.mark.parametrize(
    ("ts", "expected"),
    [
        ("2026-11-02T09:15:00Z", datetime(2026, 11, 2, 9, 15, tzinfo=UTC)),
        ("2026-11-02T10:15:00.250+01:00", datetime(2026, 11, 2, 9, 15, 0, 250000, tzinfo=UTC)),
        (1793956500000, datetime(2026, 11, 6, 9, 15, tzinfo=UTC)),
        (0, datetime(1970, 1, 1, tzinfo=UTC)),
    ],
)
def test_timestamps_become_utc(ts: object, expected: datetime) -> None:
    parsed = EVENT_MODELS["search"].model_validate(event("search", ts=ts))
    assert parsed.ts == expected
    assert format_event_time(parsed.ts).endswith("Z")


def test_times_are_formatted_as_isoformat_would_in_utc() -> None:
    """The minute-cached formatter against `isoformat`: truncated milliseconds, padded years,
    other zones converted, the same minute asked again and again."""
    draw = random.Random(7)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    times = [start + timedelta(seconds=draw.uniform(0, 3e7)) for _ in range(2000)]
    times += [times[0] + timedelta(microseconds=us) for us in (0, 999, 1000, 999_999)]
    times += [datetime(999, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC)]
    zone = timezone(timedelta(hours=-5, minutes=-30))
    times += [t.astimezone(zone) for t in times[:50]]
    for t in times:
        expected = t.astimezone(UTC).isoformat(timespec="milliseconds")[:-6] + "Z"
        assert format_event_time(t) == expected


def test_the_offset_given_is_kept_as_the_customers_zone() -> None:
    parse = EVENT_MODELS["search"].model_validate
    assert zone_offset_minutes(parse(event("search", ts="2026-11-02T10:15:00+01:00")).ts) == 60
    assert zone_offset_minutes(parse(event("search", ts="2026-11-02T01:15:00-05:30")).ts) == -330
    assert zone_offset_minutes(parse(event("search", ts="2026-11-02T10:15:00Z")).ts) is None
    assert zone_offset_minutes(parse(event("search", ts=1793956500000)).ts) is None


@pytest.mark.parametrize(
    "ts",
    ["2026-11-02T09:15:00", "yesterday", "", True, 1.5e12, -1, 10**16, None, [2026]],
)
def test_bad_timestamps_are_refused(ts: object) -> None:
    with pytest.raises(ValidationError) as info:
        EVENT_MODELS["search"].model_validate(event("search", ts=ts))
    assert info.value.errors()[0]["loc"] == ("ts",)


def test_unknown_fields_are_ignored() -> None:
    parsed = EVENT_MODELS["search"].model_validate(event("search", campaign="x", nested={"a": 1}))
    assert not hasattr(parsed, "campaign")


def test_envelope_sample_is_complete() -> None:
    assert set(ENVELOPE) == {"event_id", "customer_id", "ts", "session_id", "source"}


def _action(**overrides: object) -> dict[str, object]:
    base: dict[str, object] = {
        "action_id": "0" * 32,
        "customer_id": "c",
        "ts": "2026-11-02T09:15:00Z",
        "play": "expand",
        "channel": "onsite_cart",
        "offer_sku": "SKU-2",
        "frame": "completeness",
        "intensity": "low",
        "not_before": "2026-11-02T09:15:00Z",
        "expires_at": "2026-11-02T09:45:00Z",
        "suppress": [{"channel": "paid_retargeting", "until": "2026-11-03T09:15:00Z"}],
        "holdout": False,
        "expected_profit": 3.5,
        "propensity": 0.9,
        "reasons": ["cart_add"],
        "policy_version": "p1",
        "model_version": "m1",
        "source_event_id": "e-1",
    }
    return {**base, **overrides}


def test_action_round_trips_through_json() -> None:
    action = Action.model_validate(_action())
    again = Action.model_validate_json(action.model_dump_json())
    assert again == action
    assert action.model_dump(mode="json")["ts"] == "2026-11-02T09:15:00.000Z"


@pytest.mark.parametrize(
    "change",
    [
        {"play": "upsell"},
        {"channel": "fax"},
        {"frame": "urgency"},
        {"intensity": "extreme"},
        {"propensity": 1.5},
        {"action_id": "not-hex"},
        {"reasons": ["Has Spaces"]},
        {"expires_at": "2026-11-02T09:00:00Z"},
        {"suppress": [{"channel": "none", "until": "2026-11-03T09:15:00Z"}]},
        {"play": "protect"},
        {"channel": "none"},
        {"extra_field": 1},
        {"holdout": "no"},
    ],
)
def test_invalid_action_is_refused(change: dict) -> None:
    with pytest.raises(ValidationError):
        Action.model_validate(_action(**change))


def test_protect_action_has_no_offer() -> None:
    action = Action.model_validate(
        _action(play="protect", channel="none", offer_sku=None, frame=None)
    )
    assert action.play == "protect"
