"""The default policy's rules. Each test also runs a control without the rule and checks the
forbidden behaviour then appears: a test here fails if its rule is dropped."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from app.decisions import Decision
from app.engine import DecisionEngine
from app.errors import ConfigurationError
from app.policy import Policy, load_policy
from app.readiness import HOUR, CustomerState
from app.sample import demo_catalog, generate
from app.sequencing import cancellations, schedule
from app.yaml_config import parse
from schemas import Action
from tests.builders import Shopper

THIN = {"RUN-CAP-01", "RUN-BELT-01", "RUN-BATT-4"}  # margin rate under 15%


def without_rule(name: str, policy: Policy | None = None) -> Policy:
    policy = policy or load_policy(None)
    assert name in {r.name for r in policy.rules}
    return policy.model_copy(update={"rules": [r for r in policy.rules if r.name != name]})


def run(
    events: list[dict[str, Any]], policy: Policy | None = None
) -> tuple[list[Action], list[Decision]]:
    engine = DecisionEngine(demo_catalog(), policy)
    decisions: list[Decision] = []
    engine.on_decision = decisions.append
    actions = [a for e in events for a in engine.process(e)]
    return actions, decisions


def last(decisions: list[Decision], moment: str) -> Decision:
    return [d for d in decisions if d.moment == moment and d.candidates][-1]


# -- high return risk ---------------------------------------------------------------------
def risky_customer() -> list[dict[str, Any]]:
    s = Shopper("risky")
    events = []
    for sku in ("RUN-SHOE-01", "RUN-SHOE-02", "RUN-JACKET-01"):
        events += [s.page("size_guide"), s.view(sku), s.order(sku)]
        s.wait(days=2)
        events += [s.support(), s.return_(sku)]
        s.wait(days=3)
    s.wait(days=20)  # past the protect suppressions after the returns
    for _ in range(3):
        events += [s.view("RUN-WATCH-01"), s.read_reviews("RUN-WATCH-01", 200)]
    events += [s.add("RUN-WATCH-01"), s.add("RUN-SOCK-01"), s.add("RUN-INSOLE-01")]
    return events


def test_high_return_risk_gets_no_aggressive_upsell_but_reassurance() -> None:
    _, decisions = run(risky_customer())
    d = last(decisions, "cart")
    assert d.segments is not None and d.segments.risk == "high"
    assert "high_return_risk" in d.rules
    for c in d.candidates:  # nothing aggressive is even considered
        assert c.channel != "paid_retargeting"
        assert not (c.offer.play in ("expand", "commit") and c.intensity != "low")
        assert c.offer.relation != "upgrade"
    assert d.chosen is not None
    assert (d.chosen.intensity, d.chosen.frame) == ("low", "risk_reduction")
    assist = max(c.p_accept for c in d.candidates if c.offer.play == "assist")

    _, control = run(risky_customer(), without_rule("high_return_risk"))
    c = last(control, "cart")
    assert c.chosen is not None  # without the rule: a premium upgrade, pushed harder
    assert c.chosen.offer.relation == "upgrade" and c.chosen.intensity in ("medium", "high")
    assert max(x.p_accept for x in c.candidates if x.offer.play == "assist") < assist


def test_high_return_risk_keeps_paid_retargeting_out() -> None:
    events = risky_customer()[:-3]  # browse moments: paid retargeting is one of their channels
    _, decisions = run(events)
    d = last(decisions, "browse")
    assert ("channel:paid_retargeting", "rule:high_return_risk") in d.drops
    _, control = run(events, without_rule("high_return_risk"))
    assert any(c.channel == "paid_retargeting" for c in last(control, "browse").candidates)


# -- thin margins ---------------------------------------------------------------------------
def test_thin_margin_offers_stay_on_low_cost_surfaces() -> None:
    s = Shopper("thin")
    events = [s.view("RUN-JACKET-01"), s.view("RUN-LAMP-01")]  # accessories: cap, batteries
    _, decisions = run(events)
    thin = [c for d in decisions for c in d.candidates if c.offer.product.sku in THIN]
    assert thin, "the scenario must offer thin-margin accessories"
    assert all(
        c.channel in ("onsite_pdp", "onsite_cart", "post_purchase", "account_portal", "email")
        for c in thin
    )
    _, control = run(events, without_rule("thin_margin"))
    assert any(
        c.channel == "paid_retargeting"
        for d in control
        for c in d.candidates
        if c.offer.product.sku in THIN
    )


def test_no_thin_margin_offer_ever_goes_to_paid_or_sms() -> None:
    engine = DecisionEngine(demo_catalog())
    thin = [a for e in generate(600, seed=31) for a in engine.process(e) if a.offer_sku in THIN]
    assert thin, "the stream must lead to thin-margin offers"
    assert not [a for a in thin if a.channel in ("paid_retargeting", "sms")]


# -- high predicted LTV -----------------------------------------------------------------------
def vip(then_browse: str = "RUN-WATCH-01") -> list[dict[str, Any]]:
    s = Shopper("vip")
    events = []
    for sku in ("RUN-JACKET-01", "RUN-MASSAGE-01", "RUN-SHOE-PRO", "RUN-VEST-01"):
        events += [s.view(sku), s.order(sku)]
        s.wait(days=20)
    events += [s.view(then_browse), s.read_reviews(then_browse, 240), s.view(then_browse)]
    return events


def newcomer(then_browse: str = "RUN-WATCH-01") -> list[dict[str, Any]]:
    s = Shopper("newcomer")
    return [s.view(then_browse), s.read_reviews(then_browse, 240), s.view(then_browse)]


def test_high_ltv_gets_premium_and_commit_when_ready() -> None:
    _, decisions = run(vip())
    d = last(decisions, "browse")
    assert d.segments is not None and (d.segments.ltv, d.segments.ready) == ("high", True)
    assert "high_ltv_ready" in d.rules
    assert any(c.offer.relation == "upgrade" and c.frame == "premium_status" for c in d.candidates)
    assert d.chosen is not None and d.chosen.offer.play == "commit"
    best = max(c.p_accept for c in d.candidates if c.frame == "premium_status")
    _, control = run(vip(), without_rule("high_ltv_ready"))
    c = last(control, "browse")
    assert max(x.p_accept for x in c.candidates if x.frame == "premium_status") < best


def test_premium_is_not_offered_below_high_ltv() -> None:
    _, decisions = run(newcomer())
    d = last(decisions, "browse")
    assert d.segments is not None and d.segments.ltv != "high"
    assert not any(
        c.frame == "premium_status" or c.offer.relation == "upgrade" for c in d.candidates
    )
    _, control = run(newcomer(), without_rule("premium_for_high_ltv_only"))
    assert any(c.offer.relation == "upgrade" for c in last(control, "browse").candidates)


# -- discount-trained customers ------------------------------------------------------------
def bargain_hunter() -> list[dict[str, Any]]:
    s = Shopper("bargain")
    events = [s.coupon("view"), s.discount_click(), s.search_cheapest(), s.coupon("apply")]
    for _ in range(2):
        events += [s.view("RUN-GEL-12"), s.order("RUN-GEL-12", coupon="SAVE10")]
        s.wait(days=1)
    for _day in range(10):
        for sku in ("RUN-SHOE-01", "RUN-WATCH-01", "RUN-VEST-01", "RUN-LAMP-01"):
            events += [s.discount_click(), s.view(sku)]
            s.wait(hours=2)
        events.append(s.add("RUN-GEL-12"))
        s.wait(days=1)
    return events


def test_discount_trained_customers_get_few_promo_frames() -> None:
    actions, decisions = run(bargain_hunter())
    assert any(d.segments and d.segments.discount_trained for d in decisions)
    promo = sorted(a.ts for a in actions if a.frame == "cost_efficiency")
    for i, ts in enumerate(promo):  # at most one per 14 days
        assert all(other - ts >= timedelta(days=14) for other in promo[i + 1 :])
    value = [
        a for a in actions if a.frame in ("completeness", "convenience", "outcome_acceleration")
    ]
    assert len(value) > len(promo)
    control, _ = run(bargain_hunter(), without_rule("discount_trained"))
    assert sum(a.frame == "cost_efficiency" for a in control) > max(len(promo), 1)


# -- usage maturity --------------------------------------------------------------------------
def gel_buyer(return_after_days: float = 26) -> list[dict[str, Any]]:
    s = Shopper("gels")
    events = [s.view("RUN-GEL-12"), s.order("RUN-GEL-12")]
    s.wait(days=return_after_days)
    return [*events, s.view("RUN-SHOE-01")]


def test_consumable_nearing_refill_gets_refill_or_subscription_offer() -> None:
    actions, decisions = run(gel_buyer())
    refill = [a for a in actions if "seq:refill" in a.reasons]
    assert refill and refill[0].offer_sku in ("RUN-GEL-12", "RUN-GEL-SUB")
    due = refill[0].ts + timedelta(days=30 * 0.8 - 4)
    assert refill[0].not_before >= due
    later = last(decisions, "browse")
    due_offers = [c for c in later.candidates if c.offer.relation in ("refill", "subscription")]
    assert due_offers  # considered onsite too; chosen only if worth more than the rest:
    refills = [c for c in due_offers if c.offer.relation == "refill"]
    assert refills and all(c.value < 0.6 * c.offer.product.margin for c in refills)  # bought
    # again anyway by most who buy a consumable (priors.anyway.refill): little of it is a gain

    policy = load_policy(None)
    moments = {k: v for k, v in policy.moments.items() if k != "refill"}
    no_refill = policy.model_copy(
        update={
            "moments": moments,
            "sequencing": policy.sequencing.model_copy(update={"refill_due_from": 2.0}),
        }
    )
    control_actions, control = run(gel_buyer(), no_refill)
    assert not any("seq:refill" in a.reasons for a in control_actions)
    assert not any(c.offer.relation == "refill" for c in last(control, "browse").candidates)


def test_no_refill_offer_before_the_consumable_matures() -> None:
    _, decisions = run(gel_buyer(return_after_days=3))
    later = last(decisions, "browse")
    assert not any(c.offer.relation == "refill" for c in later.candidates)


# -- sequencing ----------------------------------------------------------------------------
def test_onsite_upsell_suppresses_paid_and_may_be_followed_by_email() -> None:
    engine = DecisionEngine(demo_catalog())
    decisions: list[Decision] = []
    engine.on_decision = decisions.append
    actions = [a for e in generate(500, seed=3) for a in engine.process(e)]
    onsite = [
        a
        for a in actions
        if a.channel in ("onsite_pdp", "onsite_cart") and a.play in ("expand", "commit")
    ]
    assert onsite
    for a in onsite:
        paid = [s for s in a.suppress if s.channel == "paid_retargeting"]
        assert paid and paid[0].until >= a.ts + timedelta(hours=72)
    followups = [a for a in actions if "seq:followup" in a.reasons]
    assert followups
    by_event = {(a.source_event_id, a.offer_sku): a for a in onsite}
    for f in followups:
        first = by_event[(f.source_event_id, f.offer_sku)]
        assert f.channel == "email" and f.not_before >= first.ts + timedelta(hours=20)
    # While the suppression lasts, paid retargeting is not a candidate for that customer.
    blocked = [d for d in decisions if ("channel:paid_retargeting", "suppressed") in d.drops]
    assert blocked


def test_post_purchase_upsells_come_with_paid_suppression() -> None:
    engine = DecisionEngine(demo_catalog())
    actions = [a for e in generate(500, seed=5) for a in engine.process(e)]
    post = [
        a
        for a in actions
        if "moment:post_purchase" in a.reasons
        and a.play in ("expand", "commit")
        and "seq:followup" not in a.reasons
    ]
    assert post
    for a in post:
        paid = [s for s in a.suppress if s.channel == "paid_retargeting"]
        assert paid and paid[0].until >= a.ts + timedelta(hours=168)


def test_a_return_calls_for_restraint() -> None:
    s = Shopper("returner")
    events = [*s.opt_in(), s.view("RUN-SHOE-01"), s.order("RUN-SHOE-01")]
    s.wait(days=4)
    events += [s.return_("RUN-SHOE-01")]
    s.wait(hours=3)
    events += [s.view("RUN-JACKET-01")]
    actions, decisions = run(events)
    protect = [a for a in actions if "protect:order_returned" in a.reasons]
    assert len(protect) == 1 and protect[0].play == "protect"
    assert {x.channel for x in protect[0].suppress} == {"email", "sms", "paid_retargeting"}
    assert all(x.until >= protect[0].ts + timedelta(days=14) for x in protect[0].suppress)
    browse = [d for d in decisions if d.moment == "browse"][-1]
    assert ("channel:email", "suppressed") in browse.drops


def test_checkout_protect_keeps_the_cart_surface_quiet() -> None:
    """At checkout an offer risks the cart: with a valuable cart nothing pays for that risk,
    so tact protects and keeps the cart surface quiet for the checkout."""
    s = Shopper("checkout")
    events = [s.view("RUN-SHOE-01"), s.add("RUN-SHOE-01"), s.add("RUN-WATCH-02"), s.checkout(578.0)]
    _, decisions = run(events)
    checkout = last(decisions, "checkout")
    (action,) = checkout.actions
    assert action.play == "protect" and "protect:not_profitable" in action.reasons
    assert [x.channel for x in action.suppress] == ["onsite_cart"]
    assert all(c.pressure > 0 for c in checkout.candidates if c.channel == "onsite_cart")

    policy = load_policy(None)  # the control: the same checkout without pressure upsells
    moments = dict(policy.moments)
    moments["checkout"] = moments["checkout"].model_copy(update={"pressure": 0.0})
    _, control = run(events, policy.model_copy(update={"moments": moments}))
    assert last(control, "checkout").actions[0].play != "protect"


def test_quiet_hours_delay_outbound_in_the_customers_zone() -> None:
    s = Shopper("night", start="2026-11-02T22:30:00", zone="+01:00")
    events = [s.view("RUN-WATCH-01"), s.read_reviews("RUN-WATCH-01"), s.view("RUN-SHOE-01")]
    engine = DecisionEngine(demo_catalog())
    decisions: list[Decision] = []
    engine.on_decision = decisions.append
    for e in events:
        engine.process(e)
    d = decisions[-1]
    state = engine.customers["night"]
    at = engine.decider.sequencer.delivery_time(state, "paid_retargeting", d.t)
    local_hour = ((at / HOUR) + 1) % 24
    assert 8 <= local_hour < 21
    assert engine.decider.sequencer.delivery_time(state, "onsite_pdp", d.t) == d.t


def test_every_pending_scheduled_offer_is_cancelled_by_a_purchase_of_its_sku() -> None:
    """Scheduled offers are remembered until they expire, not the latest few: a purchase of
    the first of twelve pending ones still cancels it."""
    state = CustomerState()
    for i in range(12):
        schedule(state, [100.0 + i, 1000.0 + i, "email" if i == 0 else "sms", f"SKU-{i}"], 10.0)
    assert cancellations(state, {"SKU-0"}, 50.0) == {"email": 1000.0}
    assert len(state.scheduled) == 11
    schedule(state, [2000.0, 3000.0, "sms", "SKU-X"], 1500.0)  # the rest expired by then
    assert state.scheduled == [[2000.0, 3000.0, "sms", "SKU-X"]]


def test_caps_days_and_quiet_hours_read_the_same_zone() -> None:
    """A customer whose events never told a zone: the policy's assumed zone decides both the
    day a cap counts on and the quiet hours (one rule, not UTC for one and the zone for the
    other)."""
    new_york = -300
    state = CustomerState()
    late = 1_793_674_800.0  # 2026-11-03T03:00Z: 22:00 on Nov 2 in New York
    state.count_use("email", late, late, new_york)
    assert state.used_today("email", late - 7 * HOUR, new_york) == 1  # 15:00 the same day
    assert state.used_today("email", late + 3 * HOUR, new_york) == 0  # 01:00 the next
    assert state.zone_or(new_york) == new_york
    state.zone = 60
    assert state.zone_or(new_york) == 60  # what their events told wins


def test_the_engine_caps_on_the_assumed_zones_day() -> None:
    """Through the engine's own channel checks: a customer whose zone is unknown, an email
    counted at 22:00 in the policy's assumed zone (New York) caps the rest of that local day
    (23:30, already the next day in UTC) and not the next local day."""
    policy = load_policy(None)
    policy = policy.model_copy(
        update={"time": policy.time.model_copy(update={"assume_utc_offset_minutes": -300})}
    )
    engine = DecisionEngine(demo_catalog(), policy)
    state = CustomerState()
    state.consent["email"] = True
    late = 1_793_674_800.0  # 2026-11-03T03:00Z: 22:00 on Nov 2 in New York
    state.count_use("email", late, late, policy.time.assume_utc_offset_minutes)
    event = SimpleNamespace(event_id="e1")
    ctx, _ = engine.decider._context("c1", state, event, late, "browse", [])  # type: ignore[arg-type]
    offers = engine.decider.offers
    assert offers.channels(ctx, {"email": late + 1.5 * HOUR}) == []  # 23:30, the same local day
    assert ("channel:email", "cap") in ctx.drops
    assert offers.channels(ctx, {"email": late + 3 * HOUR}) == ["email"]  # 01:00 the next


def test_a_day_of_onsite_offers_leaves_the_order_confirmation_its_own() -> None:
    """The onsite surfaces' shared cap counts the shopping pages, not the order confirmation:
    six offers on product pages and in the cart do not use up the moment after a purchase
    (post_purchase keeps its own cap of 2). The control: counting every surface that is not
    outbound (the cap's old reach) closes post_purchase too."""
    policy = load_policy(None)
    assert policy.caps.onsite_surfaces is not None
    assert "post_purchase" not in policy.caps.onsite_surfaces
    every = policy.model_copy(
        update={"caps": policy.caps.model_copy(update={"onsite_surfaces": None})}
    )
    t = 1_793_620_800.0  # 2026-11-02T12:00Z
    for p, closed in ((policy, []), (every, ["post_purchase"])):
        engine = DecisionEngine(demo_catalog(), p)
        state = CustomerState()
        for i in range(p.caps.onsite_per_day):
            channel = "onsite_pdp" if i < 3 else "onsite_cart"
            state.count_use(channel, t + i, t + i)
            if p.counts_onsite(channel):
                state.count_use("onsite", t + i, t + i)
        event = SimpleNamespace(event_id="e1")
        ctx, _ = engine.decider._context("c1", state, event, t + 60, "post_purchase", [])  # type: ignore[arg-type]
        offers = engine.decider.offers
        at = t + 60
        assert offers.channels(ctx, {"onsite_pdp": at}) == []  # the shopping pages are capped
        shown = offers.channels(ctx, {"post_purchase": at})
        assert shown == ([] if closed else ["post_purchase"])
        assert (("channel:post_purchase", "cap") in ctx.drops) == bool(closed)


def test_an_outbound_channel_is_not_an_onsite_surface() -> None:
    text = (Path(__file__).parents[2] / "app/policies/default.yaml").read_text()
    bad = text.replace(
        "onsite_surfaces: [onsite_pdp, onsite_cart, account_portal]",
        "onsite_surfaces: [onsite_pdp, email]",
    )
    assert bad != text
    with pytest.raises(ConfigurationError, match="onsite_surfaces"):
        parse(bad, "test", "policy", Policy)


def test_an_offer_on_the_order_confirmation_does_not_count_toward_the_shared_cap() -> None:
    """Through the engine's own sequencing: post-purchase offers leave the day's shared onsite
    count as it was, product-page offers add to it."""
    engine = DecisionEngine(demo_catalog())
    s = Shopper("counted")
    zone = engine.policy.time.assume_utc_offset_minutes
    seen = {"onsite_pdp": 0, "post_purchase": 0}
    for event in [s.view("RUN-SHOE-01"), s.add("RUN-SHOE-01"), s.order("RUN-SHOE-01")] * 3:
        state = engine.customers.get("counted")
        t = engine.models.watermark
        before = state.used_today("onsite", t, zone) if state is not None else 0
        actions = engine.process(event)
        state = engine.customers["counted"]
        after = state.used_today("onsite", engine.models.watermark, zone)
        made = [a for a in actions if not a.holdout and a.channel in seen]
        for a in made:
            seen[a.channel] += 1
        if made and all(a.channel == "post_purchase" for a in made):
            assert after == before
        if any(a.channel == "onsite_pdp" for a in made):
            assert after > before
        s.wait(days=2)
    assert seen["post_purchase"] and seen["onsite_pdp"]  # both were exercised


def test_a_misspelt_policy_key_is_answered_with_the_nearest_one() -> None:
    """A typo at the top, inside a list of rules, and in a nested section each get a "did you
    mean"; a key far from any gets none; a YAML syntax error names no "<unicode string>"."""
    text = (Path(__file__).parents[2] / "app" / "policies" / "default.yaml").read_text()
    for good, typo, hint in (
        ("min_expected_profit:", "min_expected_proft:", "did you mean 'min_expected_profit'"),
        ("deny_channels: [paid", "deny_chanels: [paid", "did you mean 'deny_channels'"),
        ("  onsite_per_day:", "  onsite_per_dya:", "did you mean 'onsite_per_day'"),
        (
            "outbound: false, daily_cap: 4",
            "outbound: false, daily_cp: 4",
            "did you mean 'daily_cap'",
        ),
    ):
        bad = text.replace(good, typo, 1)
        assert bad != text
        with pytest.raises(ConfigurationError, match=hint):
            parse(bad, "test", "policy", Policy)
    with pytest.raises(ConfigurationError) as far:
        parse(text + "\nzebra_stripes: 3\n", "test", "policy", Policy)
    assert "zebra_stripes: Extra inputs" in str(far.value) and "did you mean" not in str(far.value)
    with pytest.raises(ConfigurationError) as broken:
        parse("version: x\n  bad: [\n", "my.yaml", "policy", Policy)
    assert "my.yaml: not valid YAML" in str(broken.value)
    assert "<unicode string>" not in str(broken.value)
