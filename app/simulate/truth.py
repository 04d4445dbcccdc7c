"""The world's response model, as chances: what a shopper does when an offer reaches them.

The simulated loop draws against these (app/simulate/respond.py); the ceiling policy
(app/simulate/oracle.py) takes their expectations. One module, so the two can never disagree.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from hashlib import blake2b
from typing import TYPE_CHECKING

from app.catalog import Product

if TYPE_CHECKING:
    from app.simulate.population import Customer
    from app.simulate.world import WorldSpec

_SCALE = float(2**64)
LN2 = math.log(2.0)
DAY_S = 86400.0
ONSITE = frozenset({"onsite_pdp", "onsite_cart", "post_purchase"})
MESSAGES = frozenset({"email", "sms"})
TYPES = ("persuadable", "sure", "sleeping", "lost")


def hashed(*parts: object) -> float:
    """A uniform in [0, 1) fixed by `parts`."""
    key = "\x1f".join(str(p) for p in parts)
    return int.from_bytes(blake2b(key.encode(), digest_size=8).digest(), "big") / _SCALE


def sigmoid(x: float) -> float:
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    z = math.exp(x)
    return z / (1.0 + z)


@dataclass(slots=True)
class Stock:
    """A quantity that halves every `half_life_s` (tiredness, discount habit)."""

    half_life_s: float
    value: float = 0.0
    t: float = 0.0

    def at(self, t: float) -> float:
        if self.value == 0.0 or t <= self.t:
            return self.value
        return self.value * math.exp(-LN2 * (t - self.t) / self.half_life_s)

    def add(self, amount: float, t: float) -> None:
        self.value = self.at(t) + amount
        self.t = max(self.t, t)


def type_shares(
    world: WorldSpec, c: Customer, relation: str, sku: str | None = None
) -> dict[str, float]:
    """The chance of each type for an item (`sku`) of `relation`, given the shopper's traits."""
    shares = world.type_shares(relation, sku)
    persuadable = shares.persuadable * c.receptivity
    if relation == "upgrade":
        persuadable *= 0.3 + 2.5 * c.premium_affinity
    elif relation == "subscription" and c.refill_sku is None:
        persuadable *= 0.2  # nothing they use up
    persuadable = min(persuadable, 0.95 - shares.sure - shares.sleeping)
    out = {"sleeping": shares.sleeping, "sure": shares.sure, "persuadable": persuadable}
    out["lost"] = max(1.0 - sum(out.values()), 0.0)
    return out


def shares_given_look(
    shares: dict[str, float], sees_related: dict[str, float], looked: bool
) -> dict[str, float]:
    """The chance of each type for an item once it is known whether the shopper looked at it,
    taking every look as the world's look at a related item (each type with its own chance,
    `sees_related`). An approximation: the world's shoppers also look at items at random."""
    odds = {
        kind: share * (sees_related.get(kind, 0.0) if looked else 1.0 - sees_related.get(kind, 0.0))
        for kind, share in shares.items()
    }
    total = sum(odds.values())
    return {kind: v / total for kind, v in odds.items()} if total > 0.0 else dict(shares)


def item_type(world: WorldSpec, c: Customer, sku: str, relation: str) -> str:
    """Which type the shopper is for `sku` (fixed per shopper and item)."""
    u = hashed(c.seed, c.id, "type", sku)
    total = 0.0
    for name, share in type_shares(world, c, relation, sku).items():
        total += share
        if u < total:
            return name
    return "lost"


def frame_fit(world: WorldSpec, c: Customer, frame: str | None, relation: str, kind: str) -> float:
    if frame == "cost_efficiency":
        return world.price_frame * c.price_sensitivity - 0.6
    if frame == "risk_reduction":
        return world.risk_frame * c.return_propensity - 0.2
    if frame == "premium_status":
        return world.premium_frame * c.premium_affinity - 1.0
    if frame == "convenience":
        return world.convenience_frame if kind in ("consumable", "subscription") else -0.2
    if frame == "completeness":
        return world.completeness_frame if relation in ("accessories", "bundle_with") else 0.0
    return 0.0  # outcome_acceleration


def seen_chance(world: WorldSpec, c: Customer, channel: str) -> float:
    """The chance a delivered action is noticed at all (onsite: always)."""
    truth = world.channels[channel]
    if channel in MESSAGES:
        return min(truth.seen * (0.5 + c.engagement), 1.0)
    return truth.seen


def accept_chance(
    world: WorldSpec,
    c: Customer,
    kind_of_shopper: str,
    product: Product,
    relation: str,
    channel: str,
    frame: str | None,
    intensity: str,
    on_site: bool,
    has_base: bool,
    tired: float,
    shift: float,
) -> float:
    """The chance a shopper of this type who noticed the offer takes it up."""
    logit = (
        world.type_accept[kind_of_shopper]
        + world.channels[channel].accept
        + world.intensity[intensity]
        + world.per_100_price * (0.5 + c.price_sensitivity) * product.price / 100.0
        + frame_fit(world, c, frame, relation, product.kind)
        + world.tired_accept * tired
        + shift
    )
    if on_site and channel in ONSITE:
        logit += world.in_session
    if not has_base and relation in ("accessories", "bundle_with", "warranty"):
        logit += world.without_base
    return sigmoid(logit)


def abandon_chance(world: WorldSpec, c: Customer, moment: str, intensity: str, kind: str) -> float:
    """The chance an onsite offer at `moment` costs the purchase under way."""
    base = world.abandon.get(moment, {}).get(intensity, 0.0)
    return min(base * c.distractibility * (2.0 if kind == "sleeping" else 1.0), 0.9)


def unsubscribe_chance(
    world: WorldSpec, c: Customer, channel: str, intensity: str, tired: float, kind: str
) -> float:
    truth = world.channels[channel]
    chance = truth.unsubscribe * (0.5 + c.fatigue) * world.tire_intensity[intensity]
    chance *= 1.0 + world.unsubscribe_per_tire * tired
    return min(chance * (3.0 if kind == "sleeping" else 1.0), 0.9)


def tire_added(world: WorldSpec, channel: str, intensity: str, kind: str) -> float:
    amount = world.channels[channel].tire * world.tire_intensity[intensity]
    return amount * (3.0 if kind == "sleeping" else 1.0)


def skip_chance(world: WorldSpec, c: Customer, tired: float) -> float:
    """The chance a tired shopper skips a visit of their own."""
    return min(world.skip_per_tire * c.fatigue * tired, 0.8)


def engage_chance(world: WorldSpec, c: Customer, frame: str | None) -> float:
    """The chance a shopper engages with fit guidance or reassurance shown onsite."""
    fit = world.risk_frame * c.return_propensity if frame == "risk_reduction" else 0.0
    return sigmoid(world.assist_engage + fit)


def return_chance(
    world: WorldSpec, c: Customer, kind: str, regret: float, reassured: bool
) -> float:
    chance = c.return_propensity * world.returns.get(kind, 1.0) * regret
    if reassured:
        chance *= 1.0 - world.assist_return_cut
    return min(chance, 0.95)


def habit_factor(world: WorldSpec, habit: float) -> float:
    """How much of a full-price order of their own a discount habit leaves."""
    return 1.0 - min(habit, world.max_habit)
