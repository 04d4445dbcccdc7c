"""The engine as a whole: valid Actions, determinism, state and model checkpoints."""

from __future__ import annotations

import heapq
import math
import sys
from collections import Counter
from datetime import timedelta
from pathlib import Path
from random import Random

import orjson
import pytest
import zstandard

from app import codec
from app.actions import action_id, after_quiet, encode, encode_outcome
from app.arbitration import Arbiter
from app.attribution import (
    CHANNEL,
    END,
    FRAME,
    ID,
    LEARN,
    PLAY,
    SEGMENT,
    SKU,
    VERSIONS,
    Schedule,
)
from app.catalog import write_jsonl
from app.decisions import ACTING_TYPES, may_act
from app.decode import decode_event, validate_object
from app.engine import _COLD_LEVEL, DecisionEngine
from app.errors import BadInput, ConfigurationError
from app.policy import Policy, load_policy
from app.sample import DEMO_CATALOG, demo_catalog, generate
from schemas import FAMILY_OF_TYPE, Action
from tests.builders import Shopper
from tests.memory import traced


def run(engine: DecisionEngine, events: list[dict]) -> list[bytes]:
    return [encode(a) for e in events for a in engine.process(e)]


@pytest.fixture(scope="module")
def stream() -> list[dict]:
    return list(generate(400, seed=13))


def test_every_action_is_a_valid_action(stream: list[dict]) -> None:
    engine = DecisionEngine(demo_catalog())
    actions = [a for e in stream for a in engine.process(e)]
    assert len(actions) > 200
    for action in actions:
        again = Action.model_validate(action.model_dump())
        assert again == action
        assert encode(again) == encode(action)


def test_only_events_that_may_act_make_actions(stream: list[dict]) -> None:
    """`may_act` (what the live demo waits for) never misses an event that made an Action,
    and names exactly the event types the engine decides on."""
    engine = DecisionEngine(demo_catalog())
    acting = Counter()
    for e in stream:
        made = engine.process(e)
        assert may_act(e) or not made, e
        acting[may_act(e)] += 1
    assert acting[True] > 1000 and acting[False] > 1000
    assert set(engine.decider._dispatch) == ACTING_TYPES


def test_outbound_actions_carry_the_quiet_hours_they_were_scheduled_outside(
    stream: list[dict],
) -> None:
    """So that a connector can check them again at delivery: every outbound Action of a
    customer of known zone carries them, its not_before lies outside them, and nothing
    delivered on the store's own surfaces carries any. (The sample's times are in UTC, which
    says nothing of a zone: without the policy's assumed zone no quiet hours apply.)"""
    plain = DecisionEngine(demo_catalog())
    assert not any(a.quiet_hours for e in stream for a in plain.process(e))
    policy = load_policy(None)
    time = policy.time.model_copy(update={"assume_utc_offset_minutes": -300})
    engine = DecisionEngine(demo_catalog(), policy.model_copy(update={"time": time}))
    actions = [a for e in stream for a in engine.process(e) if a.play != "protect"]
    outbound = [a for a in actions if policy.channels[a.channel].outbound]
    assert outbound and all(a.quiet_hours is not None for a in outbound)
    for a in outbound:
        q = a.quiet_hours
        assert q is not None
        assert (q.start, q.end) == (policy.time.quiet_hours.start, policy.time.quiet_hours.end)
        assert q.utc_offset_minutes == -300
        due = a.not_before.timestamp()
        assert after_quiet(due, q.utc_offset_minutes, q.start, q.end) == due
    assert all(a.quiet_hours is None for a in actions if a not in outbound)


def test_same_events_same_actions_byte_for_byte(stream: list[dict]) -> None:
    first = run(DecisionEngine(demo_catalog()), stream)
    second = run(DecisionEngine(demo_catalog()), stream)
    assert first == second


def test_every_decision_moment_yields_one_decision(stream: list[dict]) -> None:
    """Upsell or protect: restraint is a decision too, recorded as an Action."""
    engine = DecisionEngine(demo_catalog())
    decided: list[str] = []
    engine.on_decision = lambda d: decided.append(d.event_id) if d.actions else None
    actions = [a for e in stream for a in engine.process(e)]
    ids = {a.action_id for a in actions}
    by_event = {e["event_id"]: e for e in stream}
    for event_id in decided:
        event = by_event[event_id]
        assert action_id(event["customer_id"], event_id, "decision") in ids
    plays = Counter(a.play for a in actions)
    assert plays["protect"] > 0 and plays["expand"] + plays["commit"] > 0


def test_action_ids_are_unique(stream: list[dict]) -> None:
    engine = DecisionEngine(demo_catalog())
    actions = [a for e in stream for a in engine.process(e)]
    assert len({a.action_id for a in actions}) == len(actions)


def test_checkpoint_and_restore_mid_stream_changes_nothing(stream: list[dict]) -> None:
    """What the worker relies on: states and models saved and loaded between any two events
    give the same actions as an uninterrupted run."""
    straight = run(DecisionEngine(demo_catalog()), stream)
    engine = DecisionEngine(demo_catalog())
    models: dict[str, bytes] = {}
    out = []
    for i, event in enumerate(stream):
        if i and i % 97 == 0:
            blobs = engine.dump(list(engine.customers))
            models.update(engine.models_changes())
            engine = DecisionEngine(demo_catalog())
            engine.restore(blobs)
            engine.restore_models(models)
        out += [encode(a) for a in engine.process(event)]
    assert out == straight


def test_models_swapped_in_keep_every_window_in_memory_on_schedule(stream: list[dict]) -> None:
    """A worker with a learner swaps published models in between batches and keeps its
    customers: their windows stay scheduled (the schedule carries over, with the entries of
    customers dropped since), closing exactly as if each customer were reopened."""

    def run_swapping(reopen: bool) -> list[bytes]:
        engine = DecisionEngine(demo_catalog())
        fields: dict[str, bytes] = {}
        out = []
        for i, event in enumerate(stream):
            if i and i % 211 == 0:
                engine.trim([], limit=len(engine.customers) // 2)  # (their entries stay)
                fields.update(engine.models_changes())
                engine.restore_models(fields)
                if reopen:  # the schedule built again from the customers in memory
                    engine.attribution._schedule = Schedule()
                    for cid, state in engine.customers.items():
                        engine.attribution.reopen(cid, state)
            out += [encode(a) for a in engine.process(event)]
            out += [encode_outcome(o) for o in engine.take_outcomes()]
        return out

    carried = run_swapping(reopen=False)
    assert sum(b'"status"' in line for line in carried) > 500  # windows closed on the way
    assert carried == run_swapping(reopen=True)


def frozen_policy() -> Policy:
    policy = load_policy(None)
    return policy.model_copy(
        update={"learning": policy.learning.model_copy(update={"enabled": False})}
    )


def test_evicted_customers_reload_to_the_same_decisions(stream: list[dict]) -> None:
    """Per-customer state survives eviction exactly. (With learning on, an evicted customer's
    attribution windows close when it is next loaded, so global models may learn later.)"""
    straight = run(DecisionEngine(demo_catalog(), frozen_policy()), stream)
    engine = DecisionEngine(demo_catalog(), frozen_policy())
    saved: dict[str, bytes] = {}
    out = []
    for event in stream:
        cid = event["customer_id"]
        if not engine.knows(cid) and cid in saved:
            engine.restore({cid: saved[cid]})
        out += [encode(a) for a in engine.process(event)]
        saved.update(engine.dump([cid]))
        engine.trim([cid], limit=20)
        assert len(engine.customers) <= 20
    assert out == straight


def test_a_windows_learning_features_are_kept_to_six_decimals(stream: list[dict]) -> None:
    """What a window keeps to learn from is rounded as its predictions are: 17 digits of a
    readiness signal said nothing the model uses, and made every checkpoint and cold state
    longer (a window's features: about 170 bytes of JSON, 100 rounded)."""
    engine = DecisionEngine(demo_catalog())
    learned = {}  # window id -> its features
    for event in stream:
        engine.process(event)
        state = engine.customers[event["customer_id"]]
        learned.update((w[ID], w[LEARN]) for w in state.windows if w[LEARN] is not None)
    floats = [x for learn in learned.values() for x in learn if isinstance(x, float)]
    assert len(floats) > 1000
    assert all(x == round(x, 6) for x in floats)
    assert any(x != round(x, 2) for x in floats)  # (rounded, not coarse)


def test_cold_customers_thaw_to_the_same_decisions(stream: list[dict]) -> None:
    """Customers kept cold (as their saved bytes, `trim`'s `hot`) decide, and close their
    windows, exactly as those kept as states, learning on: the same Actions and Outcomes in
    the same order, nothing lost, no window scheduled twice."""

    sizes: list[int] = []

    def run_trimmed(hot: int | None) -> tuple[list[bytes], list[bytes], int, int]:
        engine = DecisionEngine(demo_catalog())
        out, most_cold = [], 0
        for event in stream:
            out += [encode(a) for a in engine.process(event)]
            out += [encode_outcome(o) for o in engine.take_outcomes()]
            assert engine.trim([event["customer_id"]], limit=10**6, hot=hot) == []
            most_cold = max(most_cold, len(engine.cold))
            if len(engine.cold) > 100 and not sizes:  # their bytes, against zstd alone
                thawed = [engine._thaw(blob) for blob in engine.cold.values()]
                sizes.append(sum(map(len, engine.cold.values())))
                plain = zstandard.ZstdCompressor(level=_COLD_LEVEL)
                sizes.append(sum(len(plain.compress(state)) for state in thawed))
        scheduled = len(engine.attribution._schedule)
        censored = sorted(encode_outcome(o) for o in engine.flush())
        assert not engine.cold
        return out, censored, most_cold, scheduled

    expected, censored, _, scheduled = run_trimmed(None)
    assert sum(b'"status":"closed"' in line for line in expected) > 100
    out, cold_censored, most_cold, cold_scheduled = run_trimmed(20)
    assert most_cold > 100
    assert out == expected
    assert cold_censored == censored  # (at the end of the stream, in no particular order)
    assert cold_scheduled == scheduled
    # kept compressed with a dictionary of their own kind: much smaller than without one
    cold_bytes, plain_bytes = sizes
    assert cold_bytes < 0.7 * plain_bytes


def test_the_cold_tier_holds_no_more_memory_than_its_bytes(stream: list[dict]) -> None:
    """zstd's `compress` returns bytes in an allocation of the bound it compressed into (the
    size of the state); kept as they came, a cold customer would cost that, not its 0.7 KB."""
    engine = DecisionEngine(demo_catalog())
    for event in stream:
        engine.process(event)
    saved = engine.dump(list(engine.customers))
    engine._freeze(saved)  # (the first trains the dictionary)
    with traced() as memory:
        cold = engine._freeze(saved)
        taken = memory()
    size = sum(map(sys.getsizeof, cold.values())) + sys.getsizeof(cold)
    assert len(cold) > 300 and sum(map(len, saved.values())) > 3 * size
    assert taken < size + 8 * 1024


def test_a_customers_windows_on_the_schedule_share_one_string_of_their_id() -> None:
    """Each event decoded brings a string of its own; the schedule holds about five ends a
    customer, under one string of their id, the one their state is kept under."""
    engine = DecisionEngine(demo_catalog())
    events = list(generate(300, seed=3))
    for event in events[: len(events) // 3]:
        engine.process_event(decode_event(orjson.dumps(event)))
    schedule = engine.attribution._schedule
    on_it = schedule.customers()
    assert len(schedule) > 2 * len(on_it)
    kept = {cid: cid for cid in engine.customers}
    # (not where interned strings are immortal: `codec.strings_can_be_shared`)
    assert on_it and all(kept[cid] is cid for cid in on_it) == codec.SHARING


def taken(schedule: Schedule, t: float) -> list[tuple[float, str]]:
    out = []
    while (first := schedule.pop_first(t)) is not None:
        out.append(first)
    assert not schedule.first_before(t)
    return out


def test_the_schedule_gives_back_what_one_heap_of_every_pair_would() -> None:
    """Ends added in any order (earlier than a customer's earliest, equal, again after being
    taken), taken at watermarks that move: the same pairs in the same order as a heap of
    every (end, customer) pair, the way the schedule was kept before."""
    for seed in range(40):
        draw, schedule, pairs = Random(seed), Schedule(), []
        customers = [f"c{i}" for i in range(draw.randint(1, 12))]
        t = 0.0
        for _ in range(400):
            if draw.random() < 0.7:
                end = t + draw.choice([draw.uniform(-5, 50), float(draw.randint(0, 30))])
                cid = draw.choice(customers)
                schedule.add(end, cid)
                heapq.heappush(pairs, (end, cid))
            else:
                t += draw.uniform(0, 15)
                want = []
                while pairs and pairs[0][0] < t:
                    want.append(heapq.heappop(pairs))
                assert taken(schedule, t) == want
                assert len(schedule) == len(pairs)
            assert schedule.entries() <= len(schedule)  # (never more than the old heap's)
        assert taken(schedule, math.inf) == sorted(pairs)


def test_a_customers_ends_taken_off_the_schedule_never_come_back() -> None:
    """A customer's own event closes what the watermark passed of theirs (`drop_before`):
    those ends leave the schedule, the latest given back, and the rest come out in the same
    order as a heap of every pair holding only what is left."""
    for seed in range(60):
        draw, schedule, pairs = Random(seed), Schedule(), []
        customers = [f"c{i}" for i in range(draw.randint(1, 8))]
        t = 0.0
        for _ in range(400):
            roll = draw.random()
            if roll < 0.6:
                end = t + draw.choice([draw.uniform(-5, 50), float(draw.randint(0, 30))])
                cid = draw.choice(customers)
                schedule.add(end, cid)
                heapq.heappush(pairs, (end, cid))
            elif roll < 0.8:
                cid, before = draw.choice(customers), t + draw.uniform(-5, 40)
                mine = [end for end, c in pairs if c == cid and end < before]
                assert schedule.owes(cid, before) == len(mine)
                assert schedule.drop_before(cid, before) == (max(mine) if mine else None)
                pairs = [(end, c) for end, c in pairs if c != cid or end >= before]
                heapq.heapify(pairs)
                assert schedule.owes(cid, before) == 0
            else:
                t += draw.uniform(0, 15)
                assert schedule.first_before(t) == bool(pairs and pairs[0][0] < t)
                want = []
                while pairs and pairs[0][0] < t:
                    want.append(heapq.heappop(pairs))
                assert taken(schedule, t) == want
            assert len(schedule) == len(pairs)
        assert taken(schedule, math.inf) == sorted(pairs)
        assert schedule.entries() == 0 and not schedule.customers()


def test_short_windows_under_a_long_one_keep_the_schedule_small() -> None:
    """A converted window waits out its return window while short ones open and close under
    it: the long one's entry serves again each time, not pushed once more per short window."""
    schedule, t = Schedule(), 0.0
    schedule.add(1000.0, "c")
    for _ in range(1000):
        schedule.add(t + 1.0, "c")
        assert taken(schedule, t + 2.0) == [(t + 1.0, "c")]
        t += 0.05
    assert len(schedule) == 1 and schedule.entries() == 1


def test_every_event_of_a_customer_names_them_with_one_string() -> None:
    """The worker's maps key on the customer's id (states, cold bytes, partitions, the
    schedule): each decoded event used to bring a string of its own, one per map."""
    ids = [decode_event(orjson.dumps(e)).customer_id for e in generate(40, seed=5)]
    first: dict[str, str] = {}
    assert len(ids) > 2 * len(set(ids))
    # (not where interned strings are immortal: `codec.strings_can_be_shared`)
    assert all(first.setdefault(cid, cid) is cid for cid in ids) == codec.SHARING


@pytest.mark.parametrize(
    ("version", "free_threaded", "can"),
    [
        ((3, 11, 7), False, True),
        ((3, 12, 0), False, False),
        ((3, 12, 5), False, False),
        ((3, 12, 6), False, True),
        ((3, 13, 1), False, True),
        ((3, 13, 1), True, False),
    ],
)
def test_strings_are_shared_only_where_interned_ones_can_be_freed(
    version: tuple[int, int, int], free_threaded: bool, can: bool
) -> None:
    assert codec.strings_can_be_shared(version, free_threaded) is can


def test_thawed_windows_share_their_text() -> None:
    """A state made again from its bytes (cold, or loaded from the store) holds its windows'
    plays, channels, SKUs... as one shared copy each, not ten strings of its own a window."""
    engine = DecisionEngine(demo_catalog())
    events = list(generate(300, seed=3))
    for e in events[: len(events) // 3]:
        engine.process(e)
    with_windows = [cid for cid, s in engine.customers.items() if s.windows][:30]
    others = [cid for cid in engine.customers if cid not in with_windows]
    engine.trim(others, limit=10**6, hot=len(others))
    assert set(engine.cold) == set(with_windows)
    loaded = DecisionEngine(demo_catalog())
    loaded.restore(engine.dump(others))
    states = [engine.get(cid) for cid in with_windows] + list(loaded.customers.values())
    windows = [w for state in states if state is not None for w in state.windows]
    assert len(windows) > 40
    for i in (PLAY, CHANNEL, SKU, FRAME, SEGMENT, VERSIONS):
        copies, values = len({id(w[i]) for w in windows}), len({w[i] for w in windows})
        assert values < len(windows)
        assert copies == values if codec.SHARING else copies > values


def test_customers_made_states_only_to_close_windows_go_cold_first() -> None:
    """The schedule reaching a cold customer's window makes their state again; at the next
    trim, they go cold again before the customers whose events came last, as the bytes just
    saved (the worker's checkpoint), and those stay hot."""
    engine = DecisionEngine(demo_catalog(), frozen_policy())
    for e in generate(200, seed=5, arrival_span=timedelta(hours=2)):
        engine.process(e)
    with_windows = [cid for cid, s in engine.customers.items() if s.windows]
    others = [cid for cid in engine.customers if cid not in with_windows]
    assert len(others) > len(with_windows) > 5
    engine.trim(others, limit=10**6, hot=len(others))
    assert set(engine.cold) == set(with_windows)
    engine.take_outcomes()
    tick = {"event_id": "t", "type": "page_view", "page": "home", "customer_id": "t"}
    engine.process({**tick, "ts": "2026-06-01T00:00:00.000Z"})  # past every window's end
    closed = {o.customer_id for o in engine.take_outcomes()}
    assert closed == set(with_windows) and not engine.cold
    saved = engine.dump(closed | {"t"})
    marked = {cid: blob + b" " for cid, blob in saved.items()}  # (the same state, as JSON)
    assert engine.trim(["t"], limit=10**6, hot=len(others) + 1, saved=marked) == []
    assert set(engine.customers) == {*others, "t"} and set(engine.cold) == closed
    assert all(engine._thaw(engine.cold[cid]) == marked[cid] for cid in closed)  # not again
    # loaded from the store to close their windows (the worker's sweep, after the batch's own
    # customers are loaded): likewise, before customers kept from earlier batches
    earlier, latest = others[: len(others) // 2], others[len(others) // 2 :]
    blobs = engine.dump(others)

    def load(hot: int) -> DecisionEngine:
        loaded = DecisionEngine(demo_catalog(), frozen_policy())
        loaded.restore({cid: blobs[cid] for cid in earlier})
        loaded.trim(earlier, limit=10**6)
        loaded.restore({cid: blobs[cid] for cid in latest})
        loaded.restore({cid: saved[cid] for cid in sorted(closed)})
        loaded.trim(latest, limit=10**6, hot=hot)
        return loaded

    loaded = load(hot=len(others))
    assert set(loaded.customers) == set(others) and set(loaded.cold) == closed
    loaded = load(hot=len(others) + len(closed) - 3)  # (room for all but three of them)
    assert list(loaded.cold) == sorted(closed)[:3] and set(others) <= set(loaded.customers)


def test_trim_drops_the_coldest_first() -> None:
    engine = DecisionEngine(demo_catalog())
    for e in generate(10, seed=1):
        engine.process(e)
    order = list(engine.customers)
    assert engine.trim([order[0]], limit=6, hot=2) == order[1:5]
    assert list(engine.cold) == order[5:9] and list(engine.customers) == [order[9], order[0]]
    assert all(engine.knows(cid) for cid in order[5:] + order[:1])
    assert engine.get(order[6]) is not None and engine.get("stranger") is None
    assert order[6] in engine.customers and order[6] not in engine.cold


def test_evicted_customers_close_the_same_windows_when_orders_come_late() -> None:
    """The clickstream read first and the orders after it (two topics read apart): an order
    makes windows that end before the watermark already (a refill booked weeks ahead of an
    order older than the clicks). In memory they stay open until the watermark moves, and a
    later order of the same backlog converts them. Reloading an evicted customer closed them
    at once, unconverted (7 of 1,002 Outcomes changed in such a stream)."""
    events = list(generate(150, seed=31, arrival_span=timedelta(days=6)))
    orders = [e for e in events if FAMILY_OF_TYPE[e["type"]] == "orders"]
    clicks = [e for e in events if FAMILY_OF_TYPE[e["type"]] != "orders"]

    def outcomes(evict: float) -> dict[str, bytes]:
        engine, draw, out = DecisionEngine(demo_catalog(), frozen_policy()), Random(0), {}
        for event in clicks + orders:
            engine.process(event)
            if draw.random() < evict:  # every customer out of memory, and back
                saved = engine.dump(list(engine.customers))
                engine.drop(saved)
                engine.restore(saved)
            out.update((o.action_id, encode_outcome(o)) for o in engine.take_outcomes())
        out.update((o.action_id, encode_outcome(o)) for o in engine.flush())
        return out

    straight = outcomes(0.0)
    assert len(straight) > 900
    assert outcomes(0.05) == straight


def test_state_is_compact(stream: list[dict]) -> None:
    engine = DecisionEngine(demo_catalog())
    for event in stream:
        engine.process(event)
    sizes = [len(blob) for blob in engine.dump(list(engine.customers)).values()]
    assert sum(sizes) / len(sizes) < 2000  # bytes per customer, serialised


def test_process_refuses_invalid_events() -> None:
    engine = DecisionEngine(demo_catalog())
    with pytest.raises(BadInput) as info:
        engine.process({"type": "add_to_cart", "customer_id": "c"})
    assert info.value.reason == "schema"
    assert engine.customers == {}


def test_unknown_skus_are_tolerated() -> None:
    shopper = Shopper("stranger")
    engine = DecisionEngine(demo_catalog())
    events = [
        shopper.event("page_view", page="pdp", sku="NOT-IN-CATALOG"),
        shopper.event("add_to_cart", sku="NOT-IN-CATALOG", qty=1, price=5.0),
        shopper.event(
            "order_placed",
            order_id="o",
            total=5.0,
            items=[{"sku": "NOT-IN-CATALOG", "qty": 1, "price": 5.0}],
        ),
    ]
    for event in events:
        for action in engine.process(event):
            assert action.offer_sku is None or action.offer_sku in engine.catalog


def test_from_files(tmp_path: Path) -> None:
    write_jsonl(DEMO_CATALOG, tmp_path / "catalog.jsonl")
    engine = DecisionEngine.from_files(tmp_path / "catalog.jsonl", seed=3)
    assert len(engine.catalog) == len(DEMO_CATALOG)
    assert engine.policy.version.startswith("default")
    with pytest.raises(ConfigurationError):
        DecisionEngine.from_files(tmp_path / "missing.jsonl")


def test_model_version_moves_with_learning(stream: list[dict]) -> None:
    engine = DecisionEngine(demo_catalog())
    versions = {a.model_version for e in stream for a in engine.process(e)}
    assert "m1.0" in versions and len(versions) > 1


def test_explaining_does_not_change_decisions(stream: list[dict]) -> None:
    """With a decision hook every candidate is scored (for explanations); without one the
    engine prunes candidates that cannot win. Both must choose the same."""
    plain = run(DecisionEngine(demo_catalog()), stream)
    explained = DecisionEngine(demo_catalog())
    explained.on_decision = lambda d: None
    assert run(explained, stream) == plain


def test_an_offer_is_passed_over_early_only_when_no_channel_could_take_it() -> None:
    """Before reckoning what is bought anyway, `_score_offer` bounds its channel test with
    `Arbiter._most` over every amount pulled forward (0 to the plain value when positive) and
    every cannibalisation (>= 0): whenever the exact test would pass a channel, the bound does
    (within the same hair of slack)."""
    draw = Random(11)
    for _ in range(50_000):
        top, plain = draw.uniform(-20, 30), draw.uniform(-10, 30)
        pulled = draw.uniform(0, max(plain, 0.0))
        cannibalisation = draw.choice((0.0, draw.uniform(0, 5)))
        z, spread, cut = draw.choice((0.0, 2.5)), draw.uniform(0, 1.5), draw.uniform(0.0, 2.0)
        denominator = 1.0 + math.exp(-draw.uniform(-8, 2))
        base_fixed = draw.uniform(0, 1.5)
        reach = (top - pulled) / denominator
        exact = max(reach, 0.0) + z * spread * abs(reach) - (base_fixed + cannibalisation)
        bound = Arbiter._most(top, plain, z, spread) / denominator - base_fixed
        assert bound >= cut - 1e-9 or exact < cut, (top, plain, pulled, cannibalisation)


def test_a_repeated_event_id_is_not_applied_twice() -> None:
    """Producers retry: the same event sent again must not count twice."""
    s = Shopper("retry")
    view, add = s.view("RUN-SHOE-01"), s.add("RUN-SHOE-01")
    engine = DecisionEngine(demo_catalog())
    first = [a for e in (view, add) for a in engine.process(e)]
    before = engine.dump(["retry"])
    assert engine.process(add) == [] and engine.process(view) == []
    assert engine.dump(["retry"]) == before
    assert engine.duplicates == 2 and first


def test_events_naming_unknown_skus_are_counted() -> None:
    engine = DecisionEngine(demo_catalog())
    s = Shopper("c-unknown")
    engine.process(s.view("RUN-SHOE-01"))
    assert engine.unknown_sku_events == 0
    engine.process(s.view("NOT-IN-CATALOG"))
    engine.process(s.event("add_to_cart", sku="NOT-IN-CATALOG-2", qty=1, price=10.0))
    engine.process(s.order("RUN-SHOE-01"))
    assert engine.unknown_sku_events == 2
    assert engine.unknown_sku_example == "NOT-IN-CATALOG"


def test_a_customers_decisions_do_not_depend_on_when_its_windows_closed() -> None:
    """A worker can close a customer's windows early (another partition's clock runs ahead,
    and the customer is reloaded past the watermark); what the customer is offered next must
    not change. It did: a recent assist was forgotten with its window, and a worker killed
    and restarted re-decided differently from an engine that never stopped."""
    policy = load_policy(None)
    frozen = policy.model_copy(
        update={"learning": policy.learning.model_copy(update={"enabled": False})}
    )

    def run(closed_early: bool) -> list[bytes]:
        engine = DecisionEngine(demo_catalog(), frozen)
        s = Shopper("c-own")
        out = [encode(a) for a in engine.process(s.view("RUN-JACKET-01"))]
        out += [encode(a) for a in engine.process(s.add("RUN-JACKET-01"))]
        if closed_early:
            engine.customers["c-own"].windows.clear()
        s.wait(minutes=60)
        out += [encode(a) for a in engine.process(s.event("checkout_start", cart_value=129.0))]
        out += [encode(a) for a in engine.process(s.wait(minutes=3).view("RUN-JACKET-01"))]
        return out

    kept = run(False)
    assert sum(b'"play":"assist"' in a for a in kept) == 1  # the assist at the cart
    assert run(True) == kept


def test_a_refill_is_decided_on_its_own_customers_context() -> None:
    """With no post-purchase moment, a refill decided at the same instant as another
    customer's moment must not take that customer's readiness or experiment arms."""
    policy = load_policy(None)
    moments = {k: v for k, v in policy.moments.items() if k != "post_purchase"}
    policy = policy.model_copy(
        update={"moments": moments, "holdout": policy.holdout.model_copy(update={"share": 0.5})}
    )
    engine = DecisionEngine(demo_catalog(), policy)
    assign = engine.decider.experiments.assign
    ids = [f"c{i}" for i in range(40)]
    held = next(c for c in ids if assign(c).holdout)
    treated = next(c for c in ids if not assign(c).holdout)
    other, buyer = Shopper(held), Shopper(treated)
    engine.process(other.view("RUN-SHOE-01"))  # a moment at 10:00:30 for the held-out one
    actions = engine.process(buyer.order("RUN-GEL-12"))  # the treated one's order, same instant
    refills = [a for a in actions if any(r == "moment:refill" for r in a.reasons)]
    assert refills, "no refill decided"
    for action in refills:
        assert action.customer_id == treated
        assert action.experiments == assign(treated).arms
        # held out only as the treated customer's own arms say (the other is held out whole)
        assert action.holdout == (action.play in assign(treated).held_out_plays)


def test_one_partitions_clock_does_not_close_another_partitions_windows() -> None:
    """The watermark is the earliest of the input partitions' clocks: events read far ahead
    on one partition (a backlog elsewhere, a clock running ahead) close no window of a
    customer on another until that partition's own time passes the window's end. With one
    clock (a replay) the same events close it at once, the control."""
    from app.decode import validate_object

    def run(sources: tuple[int, int] | tuple[None, None]) -> tuple[list[str], list[str]]:
        engine = DecisionEngine(demo_catalog())
        mine, ahead = Shopper("c-here"), Shopper("c-ahead")
        for e in (mine.view("RUN-JACKET-01"), mine.add("RUN-JACKET-01")):
            engine.process_event(validate_object(e), sources[0])
        assert engine.customers["c-here"].windows  # an offer's window is open
        ahead.wait(days=10)
        engine.process_event(validate_object(ahead.view("RUN-JACKET-01")), sources[1])
        early = [o.customer_id for o in engine.take_outcomes()]
        other = Shopper("c-other").wait(days=5)  # another customer of the same partition
        engine.process_event(validate_object(other.page("home")), sources[0])
        later = [o.customer_id for o in engine.take_outcomes()]
        return early, later

    early, later = run((0, 1))
    assert "c-here" not in early and "c-here" in later
    early, _ = run((None, None))
    assert "c-here" in early


def owed_customers(engine: DecisionEngine) -> list[str]:
    """The customers with windows the watermark passed that wait to be closed."""
    attribution = engine.attribution
    return [cid for cid in attribution._schedule.customers() if attribution.owes(cid)]


def test_a_bound_on_closings_is_spent_on_customers_in_memory() -> None:
    """Windows of customers no longer in memory close when they are loaded (the due index,
    their next event): passing over them costs nothing, so they do not count against a
    batch's bound, and the customers still in memory close within it."""
    engine = DecisionEngine(demo_catalog(), frozen_policy())
    for e in generate(200, seed=5, arrival_span=timedelta(hours=2)):
        engine.process(e)
    with_windows = [cid for cid, state in engine.customers.items() if state.windows]
    kept = with_windows[::10]
    engine.drop([cid for cid in engine.customers if cid not in kept])
    engine.close_behind(0)  # the next event's move closes nothing of the schedule
    tick = {"event_id": "t", "type": "page_view", "page": "home", "customer_id": "t"}
    engine.process({**tick, "ts": "2026-06-01T00:00:00.000Z"})  # past every window's end
    owes = engine.attribution.owes
    owed = owed_customers(engine)
    assert len(owed) > 5 * len(kept) and all(owes(cid) for cid in kept)
    engine.close_behind(sum(owes(cid) for cid in kept))  # theirs alone
    assert not [cid for cid in kept if owes(cid)], "a kept customer's windows still wait"


def test_settling_closes_in_the_same_order_whatever_order_the_customers_come_in() -> None:
    """The worker settles the customers a batch touched, a set: iterated in an order that
    changes with each process's string hashing. What is closed, and so what the models learn
    next, must not."""
    events = list(generate(200, seed=5, arrival_span=timedelta(hours=2)))
    tick = {"event_id": "t", "type": "page_view", "page": "home", "customer_id": "t"}

    def settled(order: int) -> list[bytes]:
        engine = DecisionEngine(demo_catalog())  # (learning on)
        for e in events:
            engine.process(e)
        engine.take_outcomes()
        engine.close_behind(0)  # every window the tick passes is owed, none closed
        engine.process({**tick, "ts": "2026-06-01T00:00:00.000Z"})
        owed = owed_customers(engine)
        assert len(owed) > 5 and not engine.take_outcomes()
        engine.settle(owed[::order])
        return [encode_outcome(o) for o in engine.take_outcomes()]

    assert settled(1) == settled(-1)


def test_loading_closes_in_the_same_order_whatever_order_the_states_come_in() -> None:
    """States loaded after the watermark passed their windows' ends close those windows as
    they load (the worker asks the store for a set of customers): the same closings, in the
    same order, whatever order the states come in."""
    engine = DecisionEngine(demo_catalog())
    for e in generate(200, seed=5, arrival_span=timedelta(hours=2)):
        engine.process(e)
    blobs = engine.dump([cid for cid, s in engine.customers.items() if s.windows])
    assert len(blobs) > 5
    tick = {"event_id": "t", "type": "page_view", "page": "home", "customer_id": "t"}

    def loaded(order: int) -> list[bytes]:
        later = DecisionEngine(demo_catalog())  # (learning on)
        later.process({**tick, "ts": "2026-06-01T00:00:00.000Z"})  # past every window's end
        later.restore(dict(list(blobs.items())[::order]))
        return [encode_outcome(o) for o in later.take_outcomes()]

    closed = loaded(1)
    assert len(closed) > len(blobs) and closed == loaded(-1)


@pytest.mark.parametrize("limit", [None, 0, 5])
def test_a_watermark_lowered_owes_only_what_it_has_passed(limit: int | None) -> None:
    """A rebalance can give a worker a partition whose clock is behind, and the watermark
    falls (`set_clocks`). A window opened then, ending between the two, stays open until the
    watermark passes its end: an order a few hours later converts it."""
    engine = DecisionEngine(demo_catalog(), frozen_policy())

    def event(shopper_event: dict, partition: int) -> None:
        engine.close_behind(limit)  # (a batch)
        engine.process_event(validate_object(shopper_event), partition)

    event(Shopper("ahead").wait(days=10).page("home"), 0)
    engine.set_clocks({0: engine.clocks[0], 1: Shopper("behind").t.timestamp()})
    customer = Shopper("c")
    for e in (customer.view("RUN-JACKET-01"), customer.add("RUN-JACKET-01")):
        event(e, 1)
    window = next(w for w in engine.customers["c"].windows if w[SKU])
    assert engine.models.watermark < window[END] < engine.clocks[0]
    event(Shopper("other").wait(hours=1).page("home"), 1)  # the watermark moves an hour
    event(customer.wait(hours=2).order(window[SKU]), 1)
    for partition in (0, 1):
        event(Shopper(f"z{partition}", "2026-12-30T00:00:00").page("home"), partition)
    engine.close_behind(None)
    outcome = next(o for o in engine.take_outcomes() if o.action_id == window[ID])
    assert outcome.converted and outcome.status == "closed"


@pytest.mark.parametrize("orders_late", [False, True])
def test_closings_bounded_per_batch_give_the_same_outcomes_only_later(orders_late: bool) -> None:
    """The worker's bound on closings per batch (`close_behind`): windows the watermark has
    passed close at most `limit` customers at a time, the rest in the next batches (some with
    no events), and every Outcome is the one closing them all at once gives.
    (Learning off: with it on, when a window closes decides when its lesson is learned.) With
    the orders read after every click, windows opened for them have ended already: they stay
    open until the watermark moves again, as without a bound, and their returns count."""
    events = list(generate(300, seed=5, arrival_span=timedelta(hours=2)))
    if orders_late:
        events.sort(key=lambda e: FAMILY_OF_TYPE[e["type"]] == "orders")
    last = max(e["ts"] for e in events)
    tick = {"event_id": "t", "type": "page_view", "page": "home", "customer_id": "t"}
    tick["ts"] = "2026-06-01T00:00:00.000Z"  # passes the end of every window

    straight = DecisionEngine(demo_catalog(), frozen_policy())
    for e in [*events, tick]:
        straight.process(e)
    want = sorted(encode_outcome(o) for o in straight.take_outcomes())

    bounded = DecisionEngine(demo_catalog(), frozen_policy())
    got: list[bytes] = []
    most = 0
    batches = [events[i : i + 50] for i in range(0, len(events), 50)] + [[tick]]
    after = 0  # batches without events, to close what was left
    while batches or bounded.behind():
        bounded.close_behind(25)  # a batch: what was left first, then its events
        after += not batches
        for e in batches.pop(0) if batches else []:
            bounded.process(e)
        closed = bounded.take_outcomes()
        most = max(most, len({o.customer_id for o in closed if o.status == "closed"}))
        got += [encode_outcome(o) for o in closed]
    assert last < tick["ts"] and len(want) > 300
    # customers whose windows closed in a batch: 25 from the schedule, and those with events
    assert most <= 25 + 50 and after > 3
    assert sorted(got) == want
