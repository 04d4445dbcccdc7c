"""The simulator: deterministic, fair to every policy, delivering by the connector contract,
charging what the world says offers cost, and the ceiling that measures decisions."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from typing import Any

import pytest

from app.actions import action_id, build, suppression
from app.catalog import Catalog
from app.decode import validate_object
from app.errors import ConfigurationError
from app.policy import load_policy
from app.sample import demo_catalog
from app.simulate import truth
from app.simulate.ledger import Ledger
from app.simulate.loop import Simulation
from app.simulate.oracle import Oracle
from app.simulate.population import populate
from app.simulate.run import simulate, world_catalog
from app.simulate.world import ChannelTruth, WorldSpec, load_world, world_names
from schemas import Action

POLICY = load_policy(None)
SMALL = WorldSpec(customers=300, days=30)


def _everyone_consents(world: WorldSpec) -> WorldSpec:
    channels = {
        name: truth.model_copy(update={"consent": 1.0}) for name, truth in world.channels.items()
    }
    return world.model_copy(update={"channels": channels})


def test_the_same_seed_gives_the_same_run() -> None:
    first = simulate(SMALL, demo_catalog(), POLICY, seed=3)
    second = simulate(SMALL, demo_catalog(), POLICY, seed=3)
    for name in first:
        a, b = first[name].summary(None), second[name].summary(None)
        a.pop("seconds"), b.pop("seconds")
        assert a == b, name
    other = simulate(SMALL, demo_catalog(), POLICY, seed=4, policies=("never",))
    assert other["never"].profit != first["never"].profit


def test_population_depends_on_the_seed_alone() -> None:
    a = populate(SMALL, demo_catalog(), seed=1)
    b = populate(SMALL, demo_catalog(), seed=1)
    assert [(c.id, c.persona, c.consents, [s.t for s in c.sessions]) for c in a] == [
        (c.id, c.persona, c.consents, [s.t for s in c.sessions]) for c in b
    ]
    assert len({c.persona for c in a}) == len(SMALL.personas)
    emails = sum("email" in c.consents for c in a) / len(a)
    assert 0.4 < emails < 0.7  # the world's opt-in share (0.55)


class Scripted:
    """A policy that answers every product view with the Actions `make` gives."""

    name = "scripted"

    def __init__(self, make: Any) -> None:
        self.make = make
        self.seen: list[dict[str, Any]] = []

    def process(self, event: dict[str, Any]) -> list[Action]:
        self.seen.append(event)
        if event["type"] == "page_view" and event.get("page") == "pdp":
            return list(self.make(validate_object(event)))
        return []


def offer(
    event: Any, channel: str, *, holdout: bool = False, hours: float = 0.0, **extra: Any
) -> Action:
    at = event.ts + timedelta(hours=hours)
    fields = {
        "action_id": action_id(event.customer_id, event.event_id, channel),
        "customer_id": event.customer_id,
        "ts": event.ts,
        "play": "expand",
        "channel": channel,
        "offer_sku": "RUN-SOCK-01",
        "frame": "completeness",
        "intensity": "low",
        "not_before": at,
        "expires_at": at + timedelta(hours=72),
        "suppress": [],
        "holdout": holdout,
        "expected_profit": 1.0,
        "propensity": 1.0,
        "experiments": {},
        "reasons": ["moment:browse", "offer:accessories"],
        "policy_version": "test",
        "model_version": "test",
        "source_event_id": event.event_id,
    }
    fields.update(extra)
    return build(fields)


def run_scripted(
    make: Any, world: WorldSpec = SMALL, catalog: Catalog | None = None
) -> tuple[Ledger, Scripted]:
    catalog = catalog or demo_catalog()
    policy = Scripted(make)
    customers = populate(world, catalog, seed=2)
    return Simulation(world, catalog, customers, policy, seed=2).run(), policy


def test_holdout_actions_are_never_delivered() -> None:
    ledger, _ = run_scripted(lambda e: [offer(e, "onsite_pdp", holdout=True)])
    assert ledger.actions["expand"] > 100
    assert sum(ledger.delivered.values()) == 0 and ledger.channel_cost == 0
    assert ledger.offers_accepted == 0


def test_onsite_offers_are_shown_at_once_and_messages_when_due() -> None:
    world = _everyone_consents(SMALL)
    ledger, policy = run_scripted(
        lambda e: [offer(e, "onsite_pdp"), offer(e, "email", hours=20)], world
    )
    assert ledger.delivered["onsite_pdp"] == ledger.actions["expand"] / 2
    assert 0 < ledger.delivered["email"] <= ledger.delivered["onsite_pdp"]
    kinds = {e["kind"] for e in policy.seen if e["type"] in ("offer_feedback", "message_feedback")}
    assert {"impression", "delivered"} <= kinds  # feedback comes back to the policy
    assert ledger.offers_accepted > 0 and ledger.violations == 0


def test_a_message_without_consent_is_a_complaint_and_a_cost() -> None:
    ledger, policy = run_scripted(lambda e: [offer(e, "email")])
    consents = [e for e in policy.seen if e["type"] == "consent"]
    assert consents and {e["channel"] for e in consents} == {"email", "sms"}
    refused = {e["customer_id"] for e in consents if e["channel"] == "email" and not e["granted"]}
    complaints = {
        e["customer_id"]
        for e in policy.seen
        if e["type"] == "message_feedback" and e["kind"] == "complaint"
    }
    assert complaints and complaints <= refused
    assert ledger.violations > 0
    assert ledger.violation_cost == pytest.approx(5.0 * ledger.violations)


def test_a_later_suppression_cancels_what_it_covers() -> None:
    def make(e: Any) -> list[Action]:
        email = offer(e, "email", hours=20)
        quiet = offer(
            e,
            "none",
            action_id=action_id(e.customer_id, e.event_id, "quiet"),
            play="protect",
            offer_sku=None,
            frame=None,
            suppress=[suppression("email", e.ts + timedelta(days=2))],
        )
        return [email, quiet]

    ledger, _ = run_scripted(make, _everyone_consents(SMALL))
    assert ledger.actions["expand"] > 100
    assert ledger.delivered["email"] == 0


def test_unsubscribes_end_messages_and_the_newsletter_visits() -> None:
    world = _everyone_consents(SMALL)
    channels = dict(world.channels)
    channels["email"] = ChannelTruth(**{**world.channels["email"].model_dump(), "unsubscribe": 1.0})
    world = world.model_copy(update={"channels": channels})
    ledger, policy = run_scripted(lambda e: [offer(e, "email")], world)
    quiet, _ = run_scripted(lambda e: [], world)
    assert ledger.unsubscribes > 10
    gone: set[str] = set()
    for event in policy.seen:  # in event time
        if event["type"] != "message_feedback":
            continue
        if event["kind"] == "unsubscribe":
            assert event["customer_id"] not in gone
            gone.add(event["customer_id"])
        elif event["kind"] == "delivered":
            assert event["customer_id"] not in gone, "a message after the unsubscribe"
    assert len(gone) == ledger.unsubscribes
    assert ledger.visits_lost > 0 and quiet.visits_lost == 0  # what an unsubscribe costs


def test_contacts_tire_shoppers_into_skipping_visits() -> None:
    noisy, _ = run_scripted(lambda e: [offer(e, "onsite_pdp", intensity="high")])
    quiet, _ = run_scripted(lambda e: [])
    assert noisy.visits_skipped > 5 and quiet.visits_skipped == 0
    assert noisy.derailed > 0  # offers while a purchase is under way derail some


def test_the_ceiling_dominates_every_baseline_and_the_engine_beats_the_naive_ones() -> None:
    # 400 shoppers: the ceiling earns 26% more than the average shopper's (49% with 800), tact
    # 2,108 against rules' 135; with the ceiling blind to each shopper, it fails.
    world = load_world("default").model_copy(update={"customers": 400})
    results = simulate(world, demo_catalog(), POLICY, seed=0)
    never = results["never"]
    gain = {name: ledger.profit - never.profit for name, ledger in results.items()}
    assert gain["ceiling"] > max(v for k, v in gain.items() if k != "ceiling")
    assert gain["ceiling"] >= gain["average"] > 0
    assert gain["ceiling"] > gain["traits"] > 0  # knowing traits is not knowing types
    assert gain["tact"] > 0
    assert gain["tact"] > max(gain["always"], gain["random"], gain["rules"])
    assert all(ledger.violations == 0 for ledger in results.values())


def test_when_offers_never_work_the_engine_learns_to_hold_back() -> None:
    never_works = {"persuadable": -20.0, "sure": -20.0, "lost": -20.0, "sleeping": -20.0}
    world = WorldSpec(customers=1000, days=45, type_accept=never_works, assist_engage=-20.0)
    # Only the policies compared below (the others cost a quarter of the run).
    compared = ("never", "ceiling", "tact", "random", "always")
    results = simulate(world, demo_catalog(), POLICY, seed=0, policies=compared)
    never = results["never"]
    loss = {name: never.profit - ledger.profit for name, ledger in results.items()}
    assert abs(loss["ceiling"]) < 1.0  # nothing is worth doing
    assert loss["tact"] < 0.5 * world.customers  # under 0.50 per customer
    assert loss["tact"] < loss["random"] / 3 and loss["tact"] < loss["always"] / 10


@pytest.mark.parametrize("name", world_names())
def test_every_built_in_world_runs(name: str) -> None:
    world = load_world(name).model_copy(update={"customers": 120, "days": 20})
    catalog = world_catalog(world, demo_catalog())
    results = simulate(world, catalog, POLICY, seed=1, policies=("never", "ceiling", "tact"))
    assert results["never"].orders > 0
    assert results["ceiling"].profit >= results["never"].profit - 1e-6
    assert world.about  # every world says what it stresses


def test_world_files_are_checked(tmp_path: Any, capsys: Any) -> None:
    from app.cli import main
    from app.errors import ConfigurationError

    good = tmp_path / "good.yaml"
    good.write_text("customers: 50\nin_session: 0.2\n")
    world = load_world(good)
    assert world.customers == 50 and world.in_session == 0.2 and world.days == 60.0
    bad = tmp_path / "bad.yaml"
    bad.write_text("customers: many\nunknown_key: 1\n")
    with pytest.raises(ConfigurationError, match=r"customers.*unknown_key|unknown_key.*customers"):
        load_world(bad)
    assert main(["simulate", "--world", str(tmp_path / "missing.yaml")]) == 2
    assert "world file not found" in capsys.readouterr().err
    assert main(["simulate", "--world", "no-such-world"]) == 2
    assert "built-in worlds" in capsys.readouterr().err


def test_an_item_can_have_type_shares_of_its_own(tmp_path: Any) -> None:
    """A world may say that one add-on is mostly bought anyway and another must be asked for,
    whatever their relation's shares; the shoppers' types follow, and a SKU outside the
    world's catalog is refused."""
    world = load_world("cameras")
    card, case, strap = (
        world.type_shares("accessories", s) for s in ("CAM-SD-128", "CAM-CASE-01", "CAM-STRAP-01")
    )
    assert (
        card.sure > strap.sure > case.sure
        and case.persuadable > strap.persuadable > card.persuadable
    )
    small = world.model_copy(update={"customers": 400})
    catalog = world_catalog(small, demo_catalog())
    shoppers = populate(small, catalog, 0)
    kinds = {
        sku: Counter(truth.item_type(small, c, sku, "accessories") for c in shoppers)
        for sku in ("CAM-SD-128", "CAM-CASE-01")
    }
    assert kinds["CAM-SD-128"]["sure"] > 3 * kinds["CAM-CASE-01"]["sure"]
    assert kinds["CAM-CASE-01"]["persuadable"] > 3 * kinds["CAM-SD-128"]["persuadable"]
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "catalog: [{sku: A, price: 10.0, unit_cost: 5.0}]\n"
        "item_types: {NO-SUCH-SKU: {persuadable: 0.1, sure: 0.1}}\n"
    )
    with pytest.raises(ConfigurationError, match="NO-SUCH-SKU"):
        world_catalog(load_world(bad), demo_catalog())
    bad.write_text("item_types: {NO-SUCH-SKU: {persuadable: 0.1, sure: 0.1}}\n")  # the demo's
    with pytest.raises(ConfigurationError, match="NO-SUCH-SKU"):
        world_catalog(load_world(bad), demo_catalog())


def test_the_unsubscribe_guardrail_holds_tacts_messages_to_its_budget() -> None:
    """Where every message risks the list (5% per email), tact without a budget loses
    subscribers as fast as messages pay; with the default budget (0.5 per 1,000 customers per
    30 days) it sends far fewer, and its unsubscribes stay near the budget."""
    world = _everyone_consents(SMALL.model_copy(update={"customers": 600}))
    channels = dict(world.channels)
    for name in ("email", "sms"):
        channels[name] = ChannelTruth(**{**channels[name].model_dump(), "unsubscribe": 0.05})
    world = world.model_copy(update={"channels": channels})
    unguarded = POLICY.model_copy(
        update={"guardrails": POLICY.guardrails.model_copy(update={"unsubscribes_per_1000": None})}
    )
    free = simulate(world, demo_catalog(), unguarded, seed=2, policies=("tact",))["tact"]
    held = simulate(world, demo_catalog(), POLICY, seed=2, policies=("tact",))["tact"]
    messages = lambda ledger: ledger.delivered["email"] + ledger.delivered["sms"]  # noqa: E731
    assert free.unsubscribes >= 30  # 167 out of 1,013 messages when last measured
    # 0.3 allowed by the end, plus what was in flight when the price rose
    assert held.unsubscribes <= 6
    assert messages(held) < messages(free) / 4


def test_a_look_at_an_item_tells_the_traits_reference_who_wants_it() -> None:
    # The traits reference does not know a shopper's type for an item, only the chances their
    # traits give, updated by the world's own chance of each type looking at a related item.
    shares = {"sleeping": 0.02, "sure": 0.18, "persuadable": 0.14, "lost": 0.66}
    looks = load_world("cameras").sees_related
    looked = truth.shares_given_look(shares, looks, True)
    not_looked = truth.shares_given_look(shares, looks, False)
    for given in (looked, not_looked):
        assert sum(given.values()) == pytest.approx(1.0)
    assert looked["lost"] < shares["lost"] < not_looked["lost"]
    assert looked["sure"] > shares["sure"] > not_looked["sure"]
    # a type the world gives no chance of looking (sleeping dogs) is ruled out by a look, as
    # far as this update knows (random views are not in it)
    assert looked["sleeping"] == 0.0
    with pytest.raises(ValueError, match="knows"):
        Oracle(demo_catalog(), POLICY, 0, knows="everything")
