"""How a shopper responds to a delivered Action, drawn against the world's chances
(app/simulate/truth.py) with uniforms hashed from the seed and the action id.

every delivery     tires the shopper (sleeping dogs three times as much) and costs its spend
shown onsite       an impression; a click and an order when accepted; an offer while a
                   purchase is under way may derail it
a message          without consent: a complaint and its cost, and the shopper unsubscribes;
                   else delivered; an unsubscribe now and then (more when tired); opened by
                   the engaged; clicked and ordered when accepted
assist             the shopper may engage: the visit's purchase becomes likelier, and fit
                   guidance (risk_reduction) makes the item less likely to come back
expand / commit    taken up with the chance for this shopper's type for the item; an upgrade
                   in the cart replaces the item; a discount offer seen feeds the discount
                   habit; an accepted subscription delivers every cycle and replaces refills
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from app.actions import relation_of
from app.simulate import truth
from app.simulate.truth import MESSAGES, ONSITE
from schemas import Action

if TYPE_CHECKING:
    from app.simulate.loop import Simulation, _Shopper

_OUTBOUND_DELAY_S = {"email": (1.0, 8.0), "sms": (0.2, 1.5), "paid_retargeting": (2.0, 30.0)}


def moment_of(action: Action) -> str:
    for reason in action.reasons:
        if reason.startswith("moment:"):
            return reason[len("moment:") :]
    return ""


def respond(sim: Simulation, shopper: _Shopper, action: Action, t: float) -> None:
    world, c, channel = sim.world, shopper.customer, action.channel
    aid = action.action_id
    relation = relation_of(action.reasons, action.play)
    sku = action.offer_sku
    kind = sim.type_of(shopper, sku, relation, t) if sku and relation != "self" else "lost"
    if channel in MESSAGES and channel not in c.consents:
        _violation(sim, shopper, action, t)
        return
    tired = shopper.tire.at(t)
    shopper.tire.add(truth.tire_added(world, channel, action.intensity, kind), t)
    if channel in ONSITE:
        sim.emit(shopper, t, "offer_feedback", action_id=aid, kind="impression")
    elif channel in MESSAGES:
        sim.emit(shopper, t, "message_feedback", channel=channel, kind="delivered", action_id=aid)
        chance = truth.unsubscribe_chance(world, c, channel, action.intensity, tired, kind)
        if sim.u(aid, "unsubscribe") < chance:
            sim.unsubscribe(shopper, channel, t + 60.0, aid)
            return
    seen = truth.seen_chance(world, c, channel) if channel not in ONSITE else 1.0
    if sim.u(aid, "seen") >= seen:
        return  # never opened or noticed
    if channel in MESSAGES:
        sim.emit(
            shopper, t + 600.0, "message_feedback", channel=channel, kind="open", action_id=aid
        )
    if action.play == "assist":
        _assist(sim, shopper, action, t)
        return
    if sku is None:
        return
    if channel in ONSITE:
        _distract(sim, shopper, action, kind)
    if action.frame == "cost_efficiency":
        shopper.habit.add(c.discount_learning, t)
    if sim.u(aid, "accept") >= accept_chance(sim, shopper, action, relation, kind, tired, t):
        if channel in ONSITE and sim.u(aid, "dismiss") < 0.3:
            sim.emit(shopper, t + 5.0, "offer_feedback", action_id=aid, kind="dismiss")
        return
    sim.ledger.offers_accepted += 1
    sim.ledger.accepted_by_type[kind] += 1
    if channel in ONSITE:
        sim.emit(shopper, t + 5.0, "offer_feedback", action_id=aid, kind="accept")
        at = t + 120.0 + 180.0 * sim.u(aid, "when")
    else:
        if channel in MESSAGES:
            sim.emit(
                shopper, t + 900.0, "message_feedback", channel=channel, kind="click", action_id=aid
            )
        low, high = _OUTBOUND_DELAY_S.get(channel, (1.0, 8.0))
        at = t + (low + (high - low) * sim.u(aid, "when")) * 3600.0
    sim.take_up(shopper, action, relation, at)


def accept_chance(
    sim: Simulation,
    shopper: _Shopper,
    action: Action,
    relation: str,
    kind: str,
    tired: float,
    t: float,
) -> float:
    """The chance this shopper, having noticed the offer, takes it up."""
    sku = action.offer_sku
    product = sim.catalog.get(sku) if sku is not None else None
    if product is None:
        return 0.0
    chance = truth.accept_chance(
        sim.world,
        shopper.customer,
        kind,
        product,
        relation,
        action.channel,
        action.frame,
        action.intensity,
        sim.on_site(shopper, t),
        sim.has_base(shopper, product.sku, relation),
        tired,
        sim.shift(t),
    )
    if product.sku in shopper.owned and product.kind not in ("consumable", "subscription"):
        chance *= 0.1  # rarely buys the same thing twice
    return chance


def _violation(sim: Simulation, shopper: _Shopper, action: Action, t: float) -> None:
    """A message to a shopper who never opted in: a complaint, its cost, and an unsubscribe."""
    channel = action.channel
    sim.ledger.violations += 1
    sim.ledger.violation_cost += sim.world.channels[channel].violation
    sim.emit(
        shopper,
        t + 60.0,
        "message_feedback",
        channel=channel,
        kind="complaint",
        action_id=action.action_id,
    )
    shopper.unsubscribed.add(channel)


def _assist(sim: Simulation, shopper: _Shopper, action: Action, t: float) -> None:
    world, c = sim.world, shopper.customer
    if sim.u(action.action_id, "engage") >= truth.engage_chance(world, c, action.frame):
        return
    sim.emit(shopper, t + 5.0, "offer_feedback", action_id=action.action_id, kind="click")
    visit = shopper.visit
    if action.channel in ONSITE and visit is not None and sim.on_site(shopper, t):
        visit.lift = max(visit.lift, world.assist_lift)  # once per visit
        if action.frame == "risk_reduction" and action.offer_sku:
            visit.reassured.add(action.offer_sku)


def _distract(sim: Simulation, shopper: _Shopper, action: Action, kind: str) -> None:
    """An onsite offer while a purchase is under way may derail it."""
    visit = shopper.visit
    if visit is None or visit.session is None or not visit.cart or visit.ordered:
        return
    moment = moment_of(action)
    chance = truth.abandon_chance(sim.world, shopper.customer, moment, action.intensity, kind)
    if sim.u(action.action_id, "abandon") < chance:
        visit.abandoned = True
        sim.ledger.derailed += 1
