"""The simulated world's ground truth: who the shoppers are and how they respond.

Written from how shoppers behave (the figures behind each default are in the README's
"Simulated worlds"), not from the engine's features: the engine sees only events and has to
learn. A shopper has a persona (how often they come and buy) and traits drawn from its ranges:
price sensitivity, return propensity, taste for premium, engagement with messages, how quickly
contacts tire them, how easily an offer distracts them from a purchase under way, how quickly
discounts teach them to wait for the next one, and which channels they consented to.

For every item an offer could name, a shopper is one of four types (uplift modelling's
taxonomy): a *sure thing* buys it on their own later, a *persuadable* buys it only if asked, a
*sleeping dog* is put off by being asked, and the rest (lost causes) will not buy it. Offers
also cost: a distracted cart, tiredness across channels (which makes shoppers skip visits and
unsubscribe), unsubscribes (which end the visits the store's newsletter brings), returns,
discount habits, and channel spend.

A world file (`tact simulate --world FILE`, or a name in app/simulate/worlds/) is YAML with any
of these keys; the rest keep their defaults.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from app.catalog import ProductSpec
from app.errors import ConfigurationError
from app.yaml_config import parse, read_file

Share = Annotated[float, Field(ge=0, le=1)]
Logit = Annotated[float, Field(ge=-20, le=20)]
Span = tuple[float, float]
WORLDS_DIR = Path(__file__).parent / "worlds"
INTENSITIES = ("low", "medium", "high")


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ChannelTruth(_Spec):
    accept: Logit = 0.0  # added to the acceptance logit of offers on this channel
    cost: float = Field(default=0.0, ge=0)  # what one delivered action really costs
    seen: Share = 1.0  # messages: chance one is opened (x 0.5 + engagement); paid: noticed
    unsubscribe: Share = 0.0  # per delivered message, before tiredness
    tire: float = Field(default=0.0, ge=0)  # added to the shopper's tiredness per delivery
    violation: float = Field(default=0.0, ge=0)  # cost of a message without consent
    consent: Share = 1.0  # share of shoppers who opted in (messages)


class PersonaTruth(_Spec):
    """A kind of shopper: how often they come and how they shop; traits are drawn uniformly
    from their [low, high] ranges."""

    share: float = Field(gt=0)
    sessions: tuple[int, int]  # visits of their own over the horizon
    buy_rate: Share  # chance a visit with a cart ends in an order
    cart_rate: Share  # chance a visit puts something in the cart
    consumer: bool = False  # buys a consumable and refills it
    refill_keep: Share | None = None  # chance they refill again, per cycle (None: the world's)
    price_sensitivity: Span = (0.1, 0.4)
    return_propensity: Span = (0.03, 0.12)
    premium_affinity: Span = (0.0, 0.3)
    engagement: Span = (0.1, 0.5)  # with messages
    fatigue: Span = (0.2, 0.8)  # how much being contacted tires them
    distractibility: Span = (0.5, 1.5)  # how easily an offer derails a purchase under way
    discount_learning: Span = (0.0, 0.05)  # habit gained per discount offer seen
    receptivity: Span = (0.5, 1.5)  # x the chance of being persuadable
    coupon_hunter: bool = False
    newsletter_visits: tuple[int, int] = (0, 2)  # visits the store's newsletter brings


class TypeShares(_Spec):
    """Shares of shoppers of each type for an item of one relation (the rest: lost causes)."""

    persuadable: Share
    sure: Share
    sleeping: Share = 0.02


def _default_types() -> dict[str, TypeShares]:
    return {
        "accessories": TypeShares(persuadable=0.12, sure=0.18),
        "bundle_with": TypeShares(persuadable=0.10, sure=0.10),
        "affinity": TypeShares(persuadable=0.06, sure=0.08),
        "warranty": TypeShares(persuadable=0.07, sure=0.02),
        "upgrade": TypeShares(persuadable=0.06, sure=0.01),
        "subscription": TypeShares(persuadable=0.18, sure=0.0),
        "refill": TypeShares(persuadable=0.25, sure=0.0),
    }


def _default_channels() -> dict[str, ChannelTruth]:
    return {
        "onsite_pdp": ChannelTruth(accept=-1.2, cost=0.03, tire=0.15),
        "onsite_cart": ChannelTruth(accept=-0.6, cost=0.03, tire=0.15),
        "post_purchase": ChannelTruth(accept=0.0, cost=0.02, tire=0.1),
        "account_portal": ChannelTruth(accept=-1.2, cost=0.01, tire=0.05),
        "email": ChannelTruth(
            accept=-0.6,
            cost=0.002,
            seen=0.5,
            unsubscribe=0.0025,
            tire=0.5,
            violation=5.0,
            consent=0.55,
        ),
        "sms": ChannelTruth(
            accept=-0.3,
            cost=0.0075,
            seen=0.9,
            unsubscribe=0.01,
            tire=1.0,
            violation=25.0,
            consent=0.2,
        ),
        "paid_retargeting": ChannelTruth(accept=-2.0, cost=0.40, seen=0.5, tire=0.2),
    }


def _default_personas() -> dict[str, PersonaTruth]:
    return {
        "browser": PersonaTruth(share=0.32, sessions=(1, 3), buy_rate=0.12, cart_rate=0.3),
        "considerer": PersonaTruth(
            share=0.22,
            sessions=(2, 4),
            buy_rate=0.5,
            cart_rate=0.65,
            premium_affinity=(0.2, 0.7),
            receptivity=(0.8, 2.0),
        ),
        "deal_seeker": PersonaTruth(
            share=0.16,
            sessions=(2, 4),
            buy_rate=0.4,
            cart_rate=0.6,
            price_sensitivity=(0.6, 1.0),
            premium_affinity=(0.0, 0.1),
            discount_learning=(0.05, 0.15),
            coupon_hunter=True,
        ),
        "regular": PersonaTruth(
            share=0.16,
            sessions=(3, 6),
            buy_rate=0.7,
            cart_rate=0.8,
            consumer=True,
            engagement=(0.3, 0.8),
            fatigue=(0.1, 0.4),
            newsletter_visits=(1, 3),
        ),
        "returner": PersonaTruth(
            share=0.14,
            sessions=(2, 4),
            buy_rate=0.45,
            cart_rate=0.65,
            return_propensity=(0.3, 0.7),
            fatigue=(0.5, 1.0),
            distractibility=(1.0, 2.0),
        ),
    }


class Shift(_Spec):
    """From `day` on, every offer's acceptance logit moves by `accept` (the market changes)."""

    day: float = Field(ge=0)
    accept: Logit


class WorldSpec(_Spec):
    """How the simulated shoppers behave."""

    name: str = "default"
    about: str = ""
    customers: int = Field(default=3000, ge=10, le=1_000_000)
    days: float = Field(default=60.0, gt=1, le=730)  # the horizon
    arrival_days: float = Field(default=30.0, gt=0, le=730)  # first visits spread over this
    start: str = "2026-11-02T00:00:00+00:00"
    catalog: list[ProductSpec] | None = None  # None: the demo running store
    personas: dict[str, PersonaTruth] = Field(default_factory=_default_personas)
    channels: dict[str, ChannelTruth] = Field(default_factory=_default_channels)
    types: dict[str, TypeShares] = Field(default_factory=_default_types)
    # Some add-ons differ from the rest of their relation (a memory card most buyers get
    # anyway, a case they must be asked for): their own shares, by SKU (checked against the
    # catalog by app/simulate/run.py world_catalog, which every run of a world goes through).
    item_types: dict[str, TypeShares] = {}
    # Acceptance logit of an offer the shopper saw, by their type for the item ...
    type_accept: dict[str, Logit] = {
        "persuadable": -0.8,
        "sure": 0.2,
        "lost": -6.5,
        "sleeping": -9.0,
    }
    # ... plus the channel's, the intensity's, the frame's fit to the shopper, being on the
    # site with something in mind, the price, tiredness and the market's shifts.
    intensity: dict[str, Logit] = {"low": 0.0, "medium": 0.3, "high": 0.5}
    in_session: Logit = 0.5
    per_100_price: Logit = -0.4  # x (0.5 + price sensitivity), per 100 of the offer's price
    without_base: Logit = -1.5  # an add-on for an item the shopper neither has nor carts
    tired_accept: Logit = -0.4  # per unit of tiredness
    shifts: list[Shift] = []
    # Frame fit: logit added to acceptance, from the shopper's traits.
    price_frame: Logit = 1.8  # cost_efficiency: x price sensitivity, -0.6 flat
    risk_frame: Logit = 1.6  # risk_reduction: x return propensity, -0.2 flat
    premium_frame: Logit = 2.0  # premium_status: x premium taste, -1.0 flat
    convenience_frame: Logit = 0.6  # convenience on consumables and subscriptions
    completeness_frame: Logit = 0.4  # completeness on accessories and bundles
    discount: Share = 0.10  # what a cost_efficiency offer takes off the price
    # Distraction: an onsite offer while a purchase is under way may lose it (x the shopper's
    # distractibility; sleeping dogs twice).
    abandon: dict[str, dict[str, Share]] = {
        "browse": {"low": 0.003, "medium": 0.006, "high": 0.012},
        "cart": {"low": 0.006, "medium": 0.012, "high": 0.025},
        "checkout": {"low": 0.01, "medium": 0.02, "high": 0.04},
    }
    # Tiredness: a stock each delivery adds to (x intensity, x 3 for sleeping dogs), halving
    # every `tire_half_life_days`; per unit it makes a visit of their own likelier to be
    # skipped (x fatigue) and a message likelier to end in an unsubscribe.
    tire_intensity: dict[str, float] = {"low": 1.0, "medium": 1.5, "high": 2.5}
    tire_half_life_days: float = Field(default=10.0, gt=0)
    skip_per_tire: Share = 0.08
    unsubscribe_per_tire: float = Field(default=1.5, ge=0)
    # Discount habit: each discount offer seen adds the shopper's discount_learning to a habit
    # (halving every `habit_half_life_days`) that makes full-price orders of their own rarer.
    habit_half_life_days: float = Field(default=45.0, gt=0)
    max_habit: Share = 0.5
    # Assist: fit guidance and reassurance on the item considered.
    assist_engage: Logit = -1.6  # logit of engaging with an assist shown onsite
    assist_lift: Share = 0.08  # relative lift of the visit's purchase when engaged (once)
    assist_return_cut: Share = 0.3  # relative cut of the item's return chance (risk frame)
    # Returns: chance = return propensity x kind; offers at higher intensity are regretted more.
    returns: dict[str, float] = {
        "core": 1.0,
        "premium": 1.2,
        "accessory": 0.4,
        "consumable": 0.1,
        "subscription": 0.05,
        "warranty": 0.05,
    }
    regret: dict[str, float] = {"low": 1.0, "medium": 1.2, "high": 1.6}
    handling_cost: float = Field(default=6.0, ge=0)
    sure_days: Span = (2.0, 25.0)  # when a sure thing buys on their own, after the item
    sees_related: dict[str, Share] = {"sure": 0.5, "persuadable": 0.3, "lost": 0.08}
    refill_keep: Share = 0.75  # a consumer refills on their own, per cycle
    subscription_keep: Share = 0.9  # a subscriber keeps the next delivery

    def type_shares(self, relation: str, sku: str | None = None) -> TypeShares:
        """The shares of each type for an item of `relation` (`sku`'s own, if it has them)."""
        own = self.item_types.get(sku) if sku is not None else None
        if own is not None:
            return own
        return self.types.get(relation, TypeShares(persuadable=0.05, sure=0.05))

    def shift_at(self, t: float, start: float) -> float:
        days = (t - start) / 86400.0
        return sum(s.accept for s in self.shifts if days >= s.day)


def world_names() -> list[str]:
    """The worlds that come with tact (app/simulate/worlds/)."""
    return sorted(p.stem for p in WORLDS_DIR.glob("*.yaml"))


def load_world(path: str | Path | None) -> WorldSpec:
    """The world in `path` (YAML, or the name of a built-in world), or the default world."""
    if path is None:
        return WorldSpec()
    named = WORLDS_DIR / f"{path}.yaml"
    if not str(path).endswith((".yaml", ".yml")) and named.is_file():
        path = named
    elif not Path(path).is_file() and "/" not in str(path) and not str(path).endswith(".yaml"):
        raise ConfigurationError(
            f"world file not found: {path} (built-in worlds: {', '.join(world_names())})"
        )
    text, where = read_file(path, "world")
    return parse(text, where, "world file", WorldSpec, empty_ok=True)
