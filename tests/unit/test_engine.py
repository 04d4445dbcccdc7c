"""The skeleton engine's rules, its determinism, and its state round trip."""

from __future__ import annotations

from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from app import codec
from app.engine import ONSITE_DAILY_CAP, DecisionEngine
from app.sample import generate
from app.state import CustomerState
from tests.samples import event


def run(events: list[dict]) -> list[bytes]:
    engine = DecisionEngine()
    return [codec.dumps(a.model_dump(mode="json")) for e in events for a in engine.process(e)]


def test_cart_add_gets_an_onsite_expand_that_suppresses_paid() -> None:
    (action,) = DecisionEngine().process(event("add_to_cart"))
    assert (action.play, action.channel, action.frame) == ("expand", "onsite_cart", "completeness")
    assert [s.channel for s in action.suppress] == ["paid_retargeting"]
    assert action.source_event_id == "e-1"
    assert action.ts == action.not_before < action.expires_at


def test_return_gets_protect_with_outbound_suppressed() -> None:
    (action,) = DecisionEngine().process(event("order_returned"))
    assert (action.play, action.channel, action.offer_sku) == ("protect", "none", None)
    assert {s.channel for s in action.suppress} == {"email", "sms", "paid_retargeting"}


def test_other_events_get_no_action() -> None:
    engine = DecisionEngine()
    for t in ("page_view", "search", "order_placed", "refund", "review_read"):
        assert engine.process(event(t)) == []


def test_onsite_offers_are_capped_per_day() -> None:
    events = [
        event("add_to_cart", event_id=f"e{i}", ts=f"2026-11-02T10:{i:02d}:00Z") for i in range(6)
    ]
    events += [event("add_to_cart", event_id="next-day", ts="2026-11-03T10:00:00Z")]
    engine = DecisionEngine()
    ids = [a.source_event_id for e in events for a in engine.process(e)]
    assert ids == [f"e{i}" for i in range(ONSITE_DAILY_CAP)] + ["next-day"]


def test_same_events_give_the_same_actions_byte_for_byte() -> None:
    events = list(generate(120, seed=7))
    first, second = run(events), run(events)
    assert first == second
    assert len(first) > 50


def test_action_ids_are_unique_and_stable() -> None:
    events = list(generate(80, seed=3))
    ids = [codec.loads(a)["action_id"] for a in run(events)]
    assert len(ids) == len(set(ids))


def test_state_survives_serialisation_mid_stream() -> None:
    """Checkpoint-and-restore between any two events changes nothing: what the worker relies on."""
    events = list(generate(60, seed=11))
    straight = run(events)
    engine = DecisionEngine()
    out = []
    for i, e in enumerate(events):
        if i % 7 == 0:
            blobs = engine.dump(list(engine.customers))
            engine = DecisionEngine()
            engine.restore(blobs)
        out += [codec.dumps(a.model_dump(mode="json")) for a in engine.process(e)]
    assert out == straight


def test_generator_is_deterministic_and_time_ordered() -> None:
    a, b = list(generate(50, seed=5)), list(generate(50, seed=5))
    assert a == b
    assert [e["ts"] for e in a] == sorted(e["ts"] for e in a)
    assert a != list(generate(50, seed=6))
    types = Counter(e["type"] for e in a)
    assert types["order_placed"] > 0 and types["add_to_cart"] > 0


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 1439)), min_size=1, max_size=60))
def test_cap_is_never_exceeded(adds: list[tuple[int, int]]) -> None:
    engine = DecisionEngine()
    per_day: Counter[int] = Counter()
    for n, (day, minute) in enumerate(sorted(adds)):
        ts = f"2026-11-{day + 2:02d}T{minute // 60:02d}:{minute % 60:02d}:00Z"
        for action in engine.process(event("add_to_cart", event_id=f"e{n}", ts=ts)):
            per_day[action.ts.day] += 1
    assert all(count <= ONSITE_DAILY_CAP for count in per_day.values())


def test_customer_state_round_trip() -> None:
    engine = DecisionEngine()
    for e in generate(20, seed=2):
        engine.process(e)
    for cid, state in engine.customers.items():
        assert CustomerState.from_bytes(state.to_bytes()) == state, cid
