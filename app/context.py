"""The shapes a decision moment is made of: offers, scored candidates, the moment's context."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Final

from app.catalog import Product
from app.experiments import Assignment
from app.models import BIAS, PRIOR, PRIOR_SCALE
from app.policy import MomentName, OfferRelation
from app.readiness import CustomerState, Readiness
from app.referee import Segments, Verdict
from schemas.types import Play

# Readiness signals (0 to 1) enter the models centred on this: uncentred, each is also a second
# intercept, and the noise of their steps moved the level of every prediction together.
CENTRE: Final = 0.5
SIGNAL_FEATURES: Final = (
    ("confidence", "r:conf"),
    ("urgency", "r:urg"),
    ("price_sensitivity", "r:price"),
    ("maturity", "r:mat"),
    ("risk", "r:risk"),
)
RELATION_PLAY: Final[dict[str, Play]] = {
    "self": "assist",
    "accessories": "expand",
    "bundle_with": "expand",
    "affinity": "expand",
    "refill": "expand",
    "subscription": "commit",
    "warranty": "commit",
    "upgrade": "commit",
}
ONSITE: Final = frozenset({"onsite_pdp", "onsite_cart", "post_purchase"})
# Offers of an item the customer neither buys already (refill, subscription) nor considers at
# a price it is measured against (assist, upgrade): how dear it is for the store is the ask.
NEW_ASKS: Final = frozenset({"accessories", "bundle_with", "affinity", "warranty"})
# The offer's own features in the acceptance and organic models (app/learning.py _offer_x and
# accept_x), in this order wherever their weights are read for scoring (app/terms.py Tables,
# app/economics.py _Weights)
OFFER_FEATURES: Final = ("x:price", "x:level", "x:seen", "x:base", "x:passed")


@dataclass(frozen=True, slots=True)
class Offer:
    relation: OfferRelation
    product: Product  # what is offered (for assist: the item the customer considers)
    base: Product | None = None  # the item it relates to
    seen: bool = False  # the customer has looked at the offered item (interest, or a need)
    with_base: bool = False  # the item it goes with is in the cart, or was bought lately
    play: Play = "expand"  # set from the relation
    price_step: float = 0.0  # set: log2 of its price over the base's when dearer (0 to 4)
    price_level: float = 0.0  # set: the product's price level (app/catalog.py) for NEW_ASKS
    passed: int = 0  # earlier offers of it to this customer, not bought (app/readiness.py)

    def __post_init__(self) -> None:
        object.__setattr__(self, "play", RELATION_PLAY[self.relation])
        object.__setattr__(self, "price_step", price_step(self.product, self.base))
        if self.relation in NEW_ASKS:
            object.__setattr__(self, "price_level", self.product.price_level)


def price_step(product: Product, base: Product | None) -> float:
    """How much bigger an ask the offer is than the item it goes with: log2 of the price
    ratio, at most 4, and 0 when it is not dearer (cheaper add-ons are the usual ask; 0 too
    for assist or without a base). The dearer the offer next to what the customer came for,
    the rarer the yes."""
    if base is None or base is product:
        return 0.0
    ratio = (product.price + 1.0) / (base.price + 1.0)
    return min(max(math.log2(ratio), 0.0), 4.0)


def tag(offer: Offer) -> str:
    return f"offer:{offer.product.sku}:{offer.relation}"


@dataclass(slots=True)
class Scored:
    offer: Offer
    channel: str
    frame: str
    intensity: str
    prior: float
    p_accept: float
    p_return: float
    p_organic: float
    value: float
    channel_cost: float
    pressure: float
    cannibalisation: float
    eip: float
    spread: float = 0.0  # posterior standard deviation of eip (what exploration draws from)

    # (written out: mypyc compiles this __init__, while the one dataclasses generates runs
    # interpreted, about five times slower; one is made for every arm still in contention;
    # tests/unit/test_compiled_core.py checks it sets every field, with its default)
    def __init__(
        self,
        offer: Offer,
        channel: str,
        frame: str,
        intensity: str,
        prior: float,
        p_accept: float,
        p_return: float,
        p_organic: float,
        value: float,
        channel_cost: float,
        pressure: float,
        cannibalisation: float,
        eip: float,
        spread: float = 0.0,
    ) -> None:
        self.offer = offer
        self.channel = channel
        self.frame = frame
        self.intensity = intensity
        self.prior = prior
        self.p_accept = p_accept
        self.p_return = p_return
        self.p_organic = p_organic
        self.value = value
        self.channel_cost = channel_cost
        self.pressure = pressure
        self.cannibalisation = cannibalisation
        self.eip = eip
        self.spread = spread

    def features(self, r: Readiness) -> dict[str, float]:
        """The acceptance model's input for this candidate (what it learns from)."""
        return accept_features(self.prior, self.channel, self.offer, self.frame, self.intensity, r)


def accept_features(
    prior: float, channel: str, offer: Offer, frame: str, intensity: str, r: Readiness
) -> dict[str, float]:
    x = {
        PRIOR: prior / PRIOR_SCALE,
        BIAS: 1.0,
        f"ch:{channel}": 1.0,
        f"play:{offer.play}": 1.0,
        f"rel:{offer.relation}": 1.0,
        f"fr:{frame}": 1.0,
        f"int:{intensity}": 1.0,
        "r:post": r.signal("posture", channel) - CENTRE,
        "r:ltv": r.ltv_score - CENTRE,
        "x:price": offer.price_step,
    }
    if offer.price_level:
        x["x:level"] = offer.price_level
    if offer.seen:
        x["x:seen"] = 1.0
    if offer.with_base:
        x["x:base"] = 1.0
    if offer.passed:
        x["x:passed"] = float(offer.passed)
    for name, key in SIGNAL_FEATURES:
        x[key] = getattr(r, name) - CENTRE
    return x


def return_features(prior: float, product: Product, r: Readiness) -> dict[str, float]:
    return {PRIOR: prior / PRIOR_SCALE, BIAS: 1.0, f"kind:{product.kind}": 1.0, "r:risk": r.risk}


@dataclass(slots=True)
class Terms:
    """Per-moment parts of the acceptance logit and the pressure cost."""

    signals: dict[str, float]
    customer_logit: float
    readiness_prior: float
    w_prior: float
    by_channel: dict[str, tuple[float, float, float, float, bool]]
    by_intensity: dict[str, tuple[float, float, float, float]]
    stake_per_unit: float  # x the margin at stake = pressure scale of onsite offers
    weights_at: int
    frame_prior: dict[str, float]  # lazily filled per moment
    relation_prior: dict[str, float]
    intensity_bounds: list[tuple[float, float]]
    p_return: dict[str, float]  # product kind -> P(return), lazily filled
    discount_habit: float = 0.0  # what a discount offer seen costs in future full-price orders

    # (written out, as Scored's: one per moment)
    def __init__(
        self,
        signals: dict[str, float],
        customer_logit: float,
        readiness_prior: float,
        w_prior: float,
        by_channel: dict[str, tuple[float, float, float, float, bool]],
        by_intensity: dict[str, tuple[float, float, float, float]],
        stake_per_unit: float,
        weights_at: int,
        frame_prior: dict[str, float],
        relation_prior: dict[str, float],
        intensity_bounds: list[tuple[float, float]],
        p_return: dict[str, float],
        discount_habit: float = 0.0,
    ) -> None:
        self.signals = signals
        self.customer_logit = customer_logit
        self.readiness_prior = readiness_prior
        self.w_prior = w_prior
        self.by_channel = by_channel
        self.by_intensity = by_intensity
        self.stake_per_unit = stake_per_unit
        self.weights_at = weights_at
        self.frame_prior = frame_prior
        self.relation_prior = relation_prior
        self.intensity_bounds = intensity_bounds
        self.p_return = p_return
        self.discount_habit = discount_habit


@dataclass(slots=True)
class Context:
    """One decision moment, as the arbiter sees it."""

    moment: MomentName
    t: float
    state: CustomerState
    readiness: Readiness
    segments: Segments
    verdict: Verdict
    assignment: Assignment
    focus: list[str]  # SKUs the moment is about, most important first
    drops: list[tuple[str, str]]  # (what, why) of everything left out
    terms: Terms | None = None  # per-moment scoring terms, computed once
    considered: int = 0  # candidates the rules allowed (scored or bounded out)
    channel_drops: list[str] = field(default_factory=list)  # reason codes of closed channels
    shown: list[Scored] = field(default_factory=list)  # every candidate (explanations only)
    at_stake: float = 0.0  # margin of the purchase under way (cart, and the item in focus)
    organic: tuple[int, float] = (-1, 0.0)  # (weights version, the customer's organic logit)

    # (written out, as Scored's: one per moment)
    def __init__(
        self,
        moment: MomentName,
        t: float,
        state: CustomerState,
        readiness: Readiness,
        segments: Segments,
        verdict: Verdict,
        assignment: Assignment,
        focus: list[str],
        drops: list[tuple[str, str]],
        terms: Terms | None = None,
        considered: int = 0,
        channel_drops: list[str] | None = None,
        shown: list[Scored] | None = None,
        at_stake: float = 0.0,
        organic: tuple[int, float] = (-1, 0.0),
    ) -> None:
        self.moment = moment
        self.t = t
        self.state = state
        self.readiness = readiness
        self.segments = segments
        self.verdict = verdict
        self.assignment = assignment
        self.focus = focus
        self.drops = drops
        self.terms = terms
        self.considered = considered
        self.channel_drops = [] if channel_drops is None else channel_drops
        self.shown = [] if shown is None else shown
        self.at_stake = at_stake
        self.organic = organic
