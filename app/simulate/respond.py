"""How a customer responds to a delivered Action, by the world's ground truth.

shown onsite       an impression; a click and an order when accepted; an offer at the
                   cart or checkout may cost the order under way (more at high intensity)
a message          delivered; opened by the engaged; clicked and ordered when accepted;
                   an unsubscribe now and then, more for the tired and at high intensity
assist             the customer may engage: the session's purchase becomes likelier, and
                   fit guidance (risk_reduction) makes the item less likely to come back
expand / commit    accepted with the world's chance for this customer, offer, channel,
                   frame and intensity; accepted subscriptions deliver every refill cycle
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from app.actions import relation_of
from app.simulate.population import DAY_S
from schemas import Action

if TYPE_CHECKING:
    from app.simulate.loop import Simulation, _Shopper

ONSITE = frozenset({"onsite_pdp", "onsite_cart", "post_purchase"})
MESSAGES = frozenset({"email", "sms"})


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


_INTENSITY_TIRE = {"low": 1.0, "medium": 1.6, "high": 2.8}
_OUTBOUND_DELAY_S = {"email": (1.0, 8.0), "sms": (0.2, 1.5), "paid_retargeting": (2.0, 30.0)}


def respond(sim: Simulation, shopper: _Shopper, action: Action, t: float) -> None:
    world, c, channel = sim.world, shopper.customer, action.channel
    aid = action.action_id
    if channel in ONSITE:
        sim._emit(shopper, t, "offer_feedback", action_id=aid, kind="impression")
    elif channel in MESSAGES:
        sim._emit(shopper, t, "message_feedback", channel=channel, kind="delivered", action_id=aid)
        recent = sum(1 for m in shopper.messages if m > t - 7 * DAY_S)
        shopper.messages = [m for m in shopper.messages if m > t - 7 * DAY_S] + [t]
        truth = world.channels[channel]
        tire = truth.unsubscribe * (0.3 + c.fatigue) * _INTENSITY_TIRE[action.intensity]
        if sim._u(aid, "unsubscribe") < tire * (1.0 + 0.5 * recent):
            shopper.unsubscribed.add(channel)
            sim.ledger.unsubscribes += 1
            sim.ledger.unsubscribe_cost += truth.subscriber_value
            sim._emit(
                shopper,
                t + 60.0,
                "message_feedback",
                channel=channel,
                kind="unsubscribe",
                action_id=aid,
            )
            return
        if sim._u(aid, "open") < truth.open_rate * (0.3 + c.engagement):
            sim._emit(
                shopper, t + 600.0, "message_feedback", channel=channel, kind="open", action_id=aid
            )
        else:
            return  # never read
    if action.play == "assist":
        _assist(sim, shopper, action, t)
        return
    if action.offer_sku is None:
        return
    _pressure(sim, shopper, action)
    if sim._u(aid, "accept") >= _accept_chance(sim, shopper, action, t):
        if channel in ONSITE and sim._u(aid, "dismiss") < 0.3:
            sim._emit(shopper, t + 5.0, "offer_feedback", action_id=aid, kind="dismiss")
        return
    sim.ledger.offers_accepted += 1
    if channel in ONSITE:
        sim._emit(shopper, t + 5.0, "offer_feedback", action_id=aid, kind="accept")
        at = t + 120.0 + 180.0 * sim._u(aid, "when")
    else:
        if channel in MESSAGES:
            sim._emit(
                shopper, t + 900.0, "message_feedback", channel=channel, kind="click", action_id=aid
            )
        low, high = _OUTBOUND_DELAY_S.get(channel, (1.0, 8.0))
        at = t + (low + (high - low) * sim._u(aid, "when")) * 3600.0
    _take_up(sim, shopper, action, at)


def _assist(sim: Simulation, shopper: _Shopper, action: Action, t: float) -> None:
    world, c = sim.world, shopper.customer
    fit = world.risk_frame * c.return_propensity if action.frame == "risk_reduction" else 0.0
    if sim._u(action.action_id, "engage") >= sigmoid(world.assist_engage + fit):
        return
    sim._emit(shopper, t + 5.0, "offer_feedback", action_id=action.action_id, kind="click")
    visit = shopper.visit
    if action.channel in ONSITE and visit is not None and sim.on_site(shopper, t):
        visit.lift += world.assist_lift
        if action.frame == "risk_reduction" and action.offer_sku:
            visit.reassured.add(action.offer_sku)


def _pressure(sim: Simulation, shopper: _Shopper, action: Action) -> None:
    """An offer in the cart or at checkout distracts: it may cost the order under way."""
    visit = shopper.visit
    if (
        action.channel != "onsite_cart"
        or visit is None
        or not visit.session
        or not visit.session.cart
    ):
        return
    chance = sim.world.abandon[action.intensity]
    if "moment:checkout" in action.reasons:
        chance *= 1.5
    if sim._u(action.action_id, "abandon") < chance:
        visit.abandoned = True


def _accept_chance(sim: Simulation, shopper: _Shopper, action: Action, t: float) -> float:
    world, c = sim.world, shopper.customer
    sku = action.offer_sku
    product = sim.catalog.get(sku) if sku is not None else None
    if product is None:
        return 0.0
    relation = relation_of(action.reasons, action.play)
    logit = (
        world.base_accept
        + world.channels[action.channel].accept
        + world.relation.get(relation, 0.0)
        + world.intensity[action.intensity]
        + world.per_100_price * product.price / 100.0
        + _frame_fit(sim, shopper, action.frame, relation, product.kind)
    )
    if action.channel in ONSITE and sim.on_site(shopper, t):
        logit += world.in_session
    if action.channel in ("email", "sms"):
        logit += 1.5 * (c.engagement - 0.5)
    chance = sigmoid(logit)
    if sku in shopper.owned and product.kind not in ("consumable", "subscription"):
        chance *= 0.15  # rarely buys the same thing twice
    return chance


def _frame_fit(
    sim: Simulation, shopper: _Shopper, frame: str | None, relation: str, kind: str
) -> float:
    world, c = sim.world, shopper.customer
    if frame == "cost_efficiency":
        return world.price_frame * c.price_sensitivity - 0.5
    if frame == "risk_reduction":
        return world.risk_frame * c.return_propensity - 0.1
    if frame == "premium_status":
        return world.premium_frame * c.premium_affinity - 0.9
    if frame == "convenience":
        return world.convenience_frame if kind in ("consumable", "subscription") else -0.1
    if frame == "completeness":
        return world.completeness_frame if relation in ("accessories", "bundle_with") else 0.0
    return 0.1  # outcome_acceleration


def _take_up(sim: Simulation, shopper: _Shopper, action: Action, at: float) -> None:
    """The customer buys what was offered (at a discount under cost_efficiency)."""
    sku = action.offer_sku
    assert sku is not None
    aid = action.action_id
    price = sim._price(sku) * (
        1.0 - (sim.world.discount if action.frame == "cost_efficiency" else 0.0)
    )
    regret = sim.world.regret[action.intensity]
    if relation_of(action.reasons, action.play) == "subscription":
        base = sim._subscription_of.get(sku)
        sim._emit(shopper, at, "subscription_started", sku=sku, subscription_id=aid[:16])
        sim.ledger.subscriptions += 1
        if base is not None:
            shopper.subscribed.add(base)
        sim._push(at + 60.0, "cycle", (shopper, sku, aid, 0))
        return
    sim._order(shopper, at, [(sku, price)], 0.0, f"{aid[:16]}-o", [], None, regret)
