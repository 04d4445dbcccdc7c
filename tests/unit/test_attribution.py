"""Attribution: each Action gets exactly one Outcome, with what followed it joined on."""

from __future__ import annotations

from typing import Any

import pytest

from app.actions import outcome_json
from app.catalog import Catalog
from app.engine import DecisionEngine
from app.learning import Learner
from app.policy import Policy, load_policy
from app.sample import DEMO_CATALOG, demo_catalog, generate
from schemas import Action, Outcome
from tests.builders import Shopper

PRODUCTS = {p.sku: p for p in DEMO_CATALOG}
POLICY = load_policy(None)


def policy_with(**changes: Any) -> Policy:
    """The default policy with no holdouts or experiments (unless `changes` set them)."""
    base = POLICY.model_copy(
        update={
            "holdout": POLICY.holdout.model_copy(update={"share": 0.0}),
            "experiments": POLICY.experiments.model_copy(
                update={"play_holdouts": {}, "channel_suppression": {}}
            ),
        }
    )
    return base.model_copy(update=changes)


class Run:
    """An engine fed one event at a time, keeping every action and outcome."""

    def __init__(self, policy: Policy | None = None, catalog: Catalog | None = None) -> None:
        self.engine = DecisionEngine(catalog or demo_catalog(), policy or policy_with())
        self.actions: list[Action] = []
        self.outcomes: list[Outcome] = []

    def feed(self, *events: dict[str, Any]) -> list[Action]:
        new: list[Action] = []
        for event in events:
            new += self.engine.process(event)
            self.outcomes += self.engine.take_outcomes()
        self.actions += new
        return new

    def finish(self) -> None:
        self.outcomes += self.engine.flush()

    def outcome(self, action: Action) -> Outcome:
        (found,) = [o for o in self.outcomes if o.action_id == action.action_id]
        return found


class TaughtLearner(Learner):
    """The engine's learner, noting what each closed window teaches. (A subclass, not a patched
    method: the compiled core's objects take no new attributes.)"""

    def __init__(self, run: Run) -> None:
        super().__init__(run.engine.policy, run.engine.models)
        self.purchases: list[tuple[list[Any], bool, bool]] = []  # (features, delivered, bought)
        self.engaged: list[bool] = []
        run.engine.attribution.learner = self

    def purchase(self, learn: list[Any], *args: Any) -> None:
        *_, delivered, _segment, bought = args
        self.purchases.append((learn, delivered, bought))
        super().purchase(learn, *args)

    def engagement(self, *args: Any) -> None:
        self.engaged.append(args[-1])
        super().engagement(*args)


def onsite_upsell(run: Run, s: Shopper) -> Action:
    """Cart adds until the engine makes an onsite expand or commit offer."""
    for sku in ("RUN-SHOE-01", "RUN-WATCH-01", "RUN-VEST-01", "RUN-JACKET-01"):
        actions = run.feed(s.view(sku), s.read_reviews(sku), s.add(sku))
        found = [
            a for a in actions if a.play in ("expand", "commit") and a.channel == "onsite_cart"
        ]
        if found:
            return found[0]
    raise AssertionError("no onsite upsell in four carts")


def test_an_order_of_the_offered_sku_converts_and_credits_the_last_touch() -> None:
    run, s = Run(), Shopper("buyer")
    offer = onsite_upsell(run, s)
    assert offer.offer_sku is not None
    s.wait(hours=2)
    run.feed(s.order(offer.offer_sku))
    s.wait(days=40)  # past the return window: the record closes
    run.feed(s.view("RUN-SOCK-01"))
    outcome = run.outcome(offer)
    product = PRODUCTS[offer.offer_sku]
    assert outcome.status == "closed" and outcome.converted and outcome.delivered
    assert outcome.attribution == "last_touch"
    assert outcome.quantity == 1 and outcome.revenue == product.price
    assert outcome.margin == pytest.approx(product.price - product.unit_cost)
    assert outcome.channel_cost == POLICY.channels["onsite_cart"].cost
    assert outcome.profit == pytest.approx(outcome.margin - outcome.channel_cost)
    assert outcome.window_margin >= outcome.margin
    assert outcome.propensity == offer.propensity
    Outcome.model_validate(outcome_json(outcome))


@pytest.mark.parametrize(("held_out", "accepted"), [(False, False), (True, False), (False, True)])
def test_one_purchase_teaches_one_success(held_out: bool, accepted: bool) -> None:
    """An item offered twice before one order of it: one window is taught the sale, the
    other that it did not bring it (`other_touch`). Were both taught a success, an item
    offered three times before one purchase would look three times as likely to sell per
    offer. The credited window is the later one, unless the customer took up the earlier
    one (its `accept`); held-out windows (what customers buy unasked) count the same way."""
    policy = policy_with(holdout=POLICY.holdout.model_copy(update={"share": 1.0}))
    run, s = Run(policy if held_out else None), Shopper("twice")
    first = onsite_upsell(run, s)
    if accepted:
        run.feed(s.event("offer_feedback", kind="accept", action_id=first.action_id))
    assert first.offer_sku is not None and first.holdout == held_out
    attribution, state = run.engine.attribution, run.engine.customers[s.id]
    (entry,) = [e for e in state.windows if e[0] == first.action_id]
    second = Action.model_validate({**first.model_dump(), "action_id": "5" * 32})
    later = entry[2] + 600.0
    features = list(entry[15])  # the same features, told apart by identity below
    attribution.open(state, second, later, later, entry[8], entry[13], entry[11], features)
    learner = TaughtLearner(run)
    run.feed(s.wait(hours=1).order(first.offer_sku))
    whose = {id(entry[15]): first.action_id, id(features): second.action_id}
    taught = {whose[id(learn)]: bought for learn, _, bought in learner.purchases}
    credited, other = (first, second) if accepted else (second, first)
    assert taught == {credited.action_id: True, other.action_id: False}
    run.feed(s.wait(days=40).view("RUN-SOCK-01"))
    assert run.outcome(other).converted and run.outcome(other).attribution == "other_touch"
    assert run.outcome(credited).attribution == ("none" if held_out else "last_touch")


def test_an_offer_a_connector_reports_expired_is_never_counted_as_delivered() -> None:
    """A connector that reached the Action only after its expiry (it lagged, or the worker
    sent it already stale) says so with an `expired` receipt: the Outcome is not delivered,
    no channel cost, no credit for a later purchase, and P(accept) learns nothing from it
    (the window is a look at what the customer does unasked, as a holdout's is)."""
    run, s = Run(), Shopper("too-late")
    learner = TaughtLearner(run)
    offer = onsite_upsell(run, s)
    assert offer.offer_sku is not None
    (features,) = [e[15] for e in run.engine.customers[s.id].windows if e[0] == offer.action_id]
    run.feed(
        s.event(
            "message_feedback", channel=offer.channel, kind="expired", action_id=offer.action_id
        )
    )
    run.feed(s.wait(hours=2).order(offer.offer_sku))
    run.feed(s.wait(days=40).view("RUN-SOCK-01"))
    outcome = run.outcome(offer)
    assert not outcome.delivered and outcome.channel_cost == 0.0
    assert outcome.attribution != "last_touch" and outcome.profit <= 0.0
    assert [d for learn, d, _ in learner.purchases if learn is features] == [False]  # as unasked


def test_an_expired_receipt_after_the_purchase_takes_the_credit_back() -> None:
    """The order was read before the connector's `expired` receipt (they come on different
    topics): the window was credited with the sale at the order, and the receipt takes the
    credit, margin and return back, so the Action claims nothing it never did."""
    run, s = Run(), Shopper("receipt-late")
    offer = onsite_upsell(run, s)
    assert offer.offer_sku is not None
    run.feed(s.wait(hours=1).order(offer.offer_sku))
    run.feed(s.wait(days=2).return_(offer.offer_sku))
    run.feed(
        s.event(
            "message_feedback", channel=offer.channel, kind="expired", action_id=offer.action_id
        )
    )
    run.feed(s.wait(days=40).view("RUN-SOCK-01"))
    outcome = run.outcome(offer)
    assert outcome.converted and not outcome.delivered
    assert outcome.attribution == "none" and outcome.margin == 0.0
    assert outcome.return_loss == 0.0 and outcome.profit == 0.0


def test_a_return_within_the_window_gives_the_margin_back_with_handling() -> None:
    run, s = Run(), Shopper("returner")
    offer = onsite_upsell(run, s)
    assert offer.offer_sku is not None
    run.feed(s.order(offer.offer_sku))
    s.wait(days=5)
    run.feed(s.return_(offer.offer_sku))
    run.finish()
    outcome = run.outcome(offer)
    assert outcome.converted and outcome.returned_quantity == 1
    assert outcome.return_loss == pytest.approx(outcome.margin + POLICY.return_handling_cost)
    assert outcome.profit == pytest.approx(-POLICY.return_handling_cost - outcome.channel_cost)


def test_no_order_in_the_window_closes_unconverted_at_its_end() -> None:
    run, s = Run(), Shopper("browser")
    offer = onsite_upsell(run, s)
    s.wait(days=4)
    run.feed(s.view("RUN-CAP-01"))
    outcome = run.outcome(offer)
    assert outcome.status == "closed" and not outcome.converted
    assert outcome.closed_at == outcome.window_end
    assert outcome.profit == pytest.approx(-outcome.channel_cost)


def test_holdout_records_what_the_customer_did_without_being_asked() -> None:
    run = Run(policy_with(holdout=POLICY.holdout.model_copy(update={"share": 0.5})))
    outcome = None
    for n in range(40):  # find a holdout customer with an upsell decision
        s = Shopper(f"h{n}")
        actions = run.feed(
            s.view("RUN-SHOE-01"), s.read_reviews("RUN-SHOE-01"), s.add("RUN-SHOE-01")
        )
        held = [a for a in actions if a.holdout and a.play in ("expand", "commit") and a.offer_sku]
        # the only window of its item (another would be the one its purchase is credited to)
        held = [h for h in held if sum(a.offer_sku == h.offer_sku for a in actions) == 1]
        if held:
            assert held[0].offer_sku is not None
            run.feed(s.order(held[0].offer_sku))
            run.finish()
            outcome = run.outcome(held[0])
            break
    assert outcome is not None, "no holdout upsell in 40 customers"
    assert outcome.holdout and not outcome.delivered
    assert outcome.converted and outcome.attribution == "none"  # bought anyway: not credited
    assert outcome.channel_cost == 0 and outcome.margin == 0 and outcome.profit == 0


def test_feedback_naming_the_action_is_counted_on_its_outcome() -> None:
    run, s = Run(), Shopper("clicker")
    offer = onsite_upsell(run, s)
    run.feed(
        s.event("offer_feedback", action_id=offer.action_id, kind="impression"),
        s.event("offer_feedback", action_id=offer.action_id, kind="click"),
        s.event("offer_feedback", action_id="f" * 32, kind="click"),  # not ours: ignored
    )
    run.finish()
    assert run.outcome(offer).feedback == {"impression": 1, "click": 1}


def test_an_unsubscribe_from_a_message_costs_the_subscriber_value() -> None:
    run, s = Run(), Shopper("leaver")
    run.feed(*s.opt_in())
    emails: list[Action] = []
    for sku in ("RUN-SHOE-01", "RUN-WATCH-01", "RUN-VEST-01", "RUN-JACKET-01", "RUN-LAMP-01"):
        actions = run.feed(s.view(sku), s.read_reviews(sku, 200), s.add(sku))
        emails = [a for a in actions if a.channel == "email" and a.play != "protect"]
        if emails:
            break
        s.wait(days=2)
    assert emails, "no email in five carts"
    email = emails[0]
    s.t = email.not_before.astimezone(s.tz)
    run.feed(
        s.event("message_feedback", channel="email", kind="unsubscribe", action_id=email.action_id)
    )
    run.finish()
    outcome = run.outcome(email)
    assert outcome.feedback.get("unsubscribe") == 1
    assert outcome.unsubscribe_cost == POLICY.channels["email"].subscriber_value
    assert outcome.profit <= -outcome.unsubscribe_cost


def test_a_purchase_before_delivery_cancels_the_pending_action() -> None:
    run, s = Run(), Shopper("quick")
    run.feed(*s.opt_in())
    pending: list[Action] = []
    for sku in ("RUN-SHOE-01", "RUN-WATCH-01", "RUN-VEST-01", "RUN-JACKET-01", "RUN-LAMP-01"):
        actions = run.feed(s.view(sku), s.read_reviews(sku, 200), s.add(sku))
        pending = [
            a for a in actions if a.not_before > a.ts and a.play != "protect" and a.offer_sku
        ]
        if pending:
            break
        s.wait(days=2)
    assert pending, "no scheduled action in five carts"
    action = pending[0]
    assert action.offer_sku is not None
    run.feed(s.order(action.offer_sku))  # before it is due
    outcome = run.outcome(action)
    assert outcome.status == "cancelled" and not outcome.delivered
    assert outcome.channel_cost == 0 and outcome.profit == 0


def test_every_action_has_exactly_one_valid_outcome() -> None:
    run = Run(POLICY)
    for event in generate(300, seed=5):
        run.feed(event)
    run.finish()
    ids = [o.action_id for o in run.outcomes]
    assert len(ids) == len(set(ids))
    assert set(ids) == {a.action_id for a in run.actions}
    by_id = {a.action_id: a for a in run.actions}
    for outcome in run.outcomes:
        again = Outcome.model_validate(outcome_json(outcome))
        action = by_id[outcome.action_id]
        assert (again.play, again.channel, again.offer_sku, again.holdout) == (
            action.play,
            action.channel,
            action.offer_sku,
            action.holdout,
        )
        assert again.profit == pytest.approx(
            again.margin - again.return_loss - again.channel_cost - again.unsubscribe_cost
        )
    assert {o.status for o in run.outcomes} >= {"closed", "censored"}


def test_outcomes_are_the_same_in_two_runs() -> None:
    first, second = Run(POLICY), Run(POLICY)
    for event in generate(200, seed=8):
        first.feed(event)
        second.feed(event)
    assert [outcome_json(o) for o in first.outcomes] == [outcome_json(o) for o in second.outcomes]


def converted_offer(run: Run, s: Shopper) -> Action:
    """An onsite upsell the shopper takes up at once (the order converts its window)."""
    offer = onsite_upsell(run, s)
    assert offer.offer_sku is not None
    run.feed(s.order(offer.offer_sku))
    return offer


def test_a_return_of_the_sku_from_another_order_is_not_charged_to_the_window() -> None:
    run, s = Run(), Shopper("two-orders")
    offer = converted_offer(run, s)
    assert offer.offer_sku is not None
    s.wait(days=2)
    run.feed(s.order(offer.offer_sku))  # the same item again, later, of their own
    s.wait(days=3)
    run.feed(s.return_(offer.offer_sku))  # names the later order
    run.finish()
    outcome = run.outcome(offer)
    assert outcome.converted and outcome.returned_quantity == 0 and outcome.return_loss == 0
    assert outcome.returns_matched_by == "order"


def test_a_return_naming_the_converting_order_is_charged() -> None:
    run, s = Run(), Shopper("one-return")
    offer = converted_offer(run, s)
    assert offer.offer_sku is not None
    converting = s.orders
    s.wait(days=2)
    run.feed(s.order("RUN-SOCK-01"))
    s.wait(days=1)
    run.feed(s.return_(offer.offer_sku, order=converting))
    run.finish()
    outcome = run.outcome(offer)
    assert outcome.returned_quantity == 1
    assert outcome.return_loss == pytest.approx(outcome.margin + POLICY.return_handling_cost)


@pytest.mark.parametrize("refund_first", [True, False])
def test_a_refund_and_a_return_of_the_same_item_count_once(refund_first: bool) -> None:
    run, s = Run(), Shopper(f"refund-and-return-{refund_first}")
    offer = converted_offer(run, s)
    assert offer.offer_sku is not None
    order_id = f"{s.id}-o{s.orders}"
    refund = s.wait(days=1).event(
        "refund", order_id=order_id, amount=PRODUCTS[offer.offer_sku].price
    )
    back = s.wait(days=1).return_(offer.offer_sku)
    run.feed(*((refund, back) if refund_first else (back, refund)))
    run.finish()
    outcome = run.outcome(offer)
    assert outcome.returned_quantity == 1
    assert outcome.return_loss == pytest.approx(outcome.margin + POLICY.return_handling_cost)


@pytest.mark.parametrize(("feedback", "learned"), [("delivered", False), ("impression", True)])
def test_an_onsite_assist_is_learned_from_only_when_the_storefront_showed_it(
    feedback: str, learned: bool
) -> None:
    """A connector's `delivered` receipt for an onsite Action means it was stored for the
    page, not that anyone saw it: only an impression (click, accept) teaches engagement."""
    run, s = Run(), Shopper(f"assist-{feedback}")
    learner = TaughtLearner(run)
    assist = None
    for sku in ("RUN-SHOE-01", "RUN-WATCH-01", "RUN-VEST-01", "RUN-JACKET-01", "RUN-SHOE-02"):
        found = [
            a
            for a in run.feed(s.view(sku), s.add(sku))
            if a.play == "assist" and a.channel.startswith("onsite")
        ]
        if found:
            assist = found[0]
            break
    assert assist is not None, "no onsite assist"
    if feedback == "delivered":
        event = s.event(
            "message_feedback", channel=assist.channel, kind="delivered", action_id=assist.action_id
        )
    else:
        event = s.event("offer_feedback", action_id=assist.action_id, kind="impression")
    run.feed(event)
    s.wait(days=5)
    run.feed(s.view("RUN-SOCK-01"))
    run.finish()
    assert bool(learner.engaged) is learned


def test_windows_of_one_customer_ending_together_cost_a_bound_one_closing() -> None:
    """The worker's bound counts the closings it makes from the schedule. Windows of one
    customer ending at the same moment close together at the first of them: the others are
    not a closing each."""
    run, first, second = Run(), Shopper("a-twice"), Shopper("b-once")
    offer = onsite_upsell(run, first)
    attribution, state = run.engine.attribution, run.engine.customers[first.id]
    (entry,) = [e for e in state.windows if e[0] == offer.action_id]
    twin = Action.model_validate({**offer.model_dump(), "action_id": "6" * 32})
    attribution.open(state, twin, entry[1], entry[2], entry[8], entry[13], entry[11], None)
    onsite_upsell(run, second.wait(hours=1))
    engine = run.engine
    engine.close_behind(0)  # every window the tick passes is owed, none closed
    run.feed(Shopper("tick", "2026-12-30T00:00:00").page("home"))
    passed = engine.models.watermark
    windows = [(c, e[3]) for c, s in engine.customers.items() for e in s.windows if e[3] < passed]
    assert len(set(windows)) == len(windows) - 1  # (the twin's end)
    batches = 0
    while engine.behind() and batches < 100:
        engine.close_behind(1)
        batches += 1
    assert batches == len(set(windows))
    assert len(engine.take_outcomes()) == len(windows)
