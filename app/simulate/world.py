"""The simulated world's ground truth: who the customers are and how they respond.

Nothing here is known to the engine: it sees only events. The defaults describe a running
store whose customers differ in price sensitivity, return propensity, taste for premium items,
engagement with messages and tolerance of them, and respond to offers accordingly. They are
deliberately not the engine's priors (app/policies/default.yaml): the engine has to learn.

A world file (`tact simulate --world FILE`) is YAML with any of these keys; the rest keep
their defaults.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from app.yaml_config import parse, read_file

Share = Annotated[float, Field(ge=0, le=1)]
Logit = Annotated[float, Field(ge=-20, le=20)]


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ChannelTruth(_Spec):
    accept: Logit  # added to the acceptance logit of offers on this channel
    cost: float = Field(ge=0)  # what one delivered action really costs
    open_rate: Share = 1.0  # messages: how often one is opened at all (times engagement)
    unsubscribe: Share = 0.0  # per delivered message, times the customer's fatigue
    subscriber_value: float = Field(default=0.0, ge=0)  # lost with an unsubscribe


class PersonaTruth(_Spec):
    """A kind of customer: how often they come, how they shop, and their traits (each drawn
    uniformly from its [low, high] range)."""

    share: float = Field(gt=0)
    sessions: tuple[int, int]  # sessions over the horizon
    buy_rate: Share  # chance a session with a cart ends in an order
    cart_rate: Share  # chance a session puts something in the cart
    consumer: bool = False  # buys consumables and refills them
    price_sensitivity: tuple[Share, Share] = (0.1, 0.4)
    return_propensity: tuple[Share, Share] = (0.05, 0.15)
    premium_affinity: tuple[Share, Share] = (0.0, 0.3)
    engagement: tuple[Share, Share] = (0.2, 0.6)  # with messages (opens, clicks)
    fatigue: tuple[Share, Share] = (0.2, 0.6)  # how quickly messages annoy
    coupon_hunter: bool = False


def _default_channels() -> dict[str, ChannelTruth]:
    return {
        "onsite_pdp": ChannelTruth(accept=0.0, cost=0.15),
        "onsite_cart": ChannelTruth(accept=0.5, cost=0.15),
        "post_purchase": ChannelTruth(accept=0.6, cost=0.05),
        "account_portal": ChannelTruth(accept=-0.6, cost=0.02),
        "email": ChannelTruth(
            accept=-0.8, cost=0.002, open_rate=0.5, unsubscribe=0.004, subscriber_value=4.0
        ),
        "sms": ChannelTruth(
            accept=-0.6, cost=0.0075, open_rate=0.9, unsubscribe=0.02, subscriber_value=6.0
        ),
        "paid_retargeting": ChannelTruth(accept=-2.8, cost=0.35),
    }


def _default_personas() -> dict[str, PersonaTruth]:
    return {
        "window_shopper": PersonaTruth(share=0.30, sessions=(1, 3), buy_rate=0.08, cart_rate=0.25),
        "careful_buyer": PersonaTruth(
            share=0.22,
            sessions=(2, 4),
            buy_rate=0.55,
            cart_rate=0.7,
            return_propensity=(0.03, 0.1),
            premium_affinity=(0.2, 0.7),
        ),
        "bargain_hunter": PersonaTruth(
            share=0.15,
            sessions=(2, 4),
            buy_rate=0.45,
            cart_rate=0.7,
            price_sensitivity=(0.6, 1.0),
            premium_affinity=(0.0, 0.1),
            coupon_hunter=True,
        ),
        "repeat_buyer": PersonaTruth(
            share=0.18,
            sessions=(3, 6),
            buy_rate=0.8,
            cart_rate=0.9,
            consumer=True,
            engagement=(0.4, 0.9),
            fatigue=(0.1, 0.3),
        ),
        "returner": PersonaTruth(
            share=0.15,
            sessions=(2, 4),
            buy_rate=0.5,
            cart_rate=0.7,
            return_propensity=(0.45, 0.8),
            fatigue=(0.4, 0.9),
        ),
    }


class WorldSpec(_Spec):
    """How the simulated customers behave."""

    customers: int = Field(default=3000, ge=10, le=1_000_000)
    days: float = Field(default=60.0, gt=1, le=730)  # the horizon
    arrival_days: float = Field(default=30.0, gt=0, le=730)  # first visits spread over this
    start: str = "2026-11-02T00:00:00+00:00"
    personas: dict[str, PersonaTruth] = Field(default_factory=_default_personas)
    channels: dict[str, ChannelTruth] = Field(default_factory=_default_channels)
    # Acceptance logit of a delivered offer: base + channel + relation + frame fit + intensity
    # + readiness (in session, with a cart) - price (the dearer, the rarer).
    base_accept: Logit = -4.8
    relation: dict[str, Logit] = {
        "accessories": 0.6,
        "bundle_with": 0.3,
        "affinity": 0.2,
        "subscription": 0.2,
        "warranty": 0.1,
        "upgrade": -0.8,
        "refill": 1.2,
    }
    intensity: dict[str, Logit] = {"low": 0.0, "medium": 0.25, "high": 0.4}
    in_session: Logit = 0.6  # the customer is on the site with something in mind
    per_100_price: Logit = -0.5  # per 100 of the offer's price
    # Frame fit: logit added to acceptance, from the customer's traits.
    price_frame: Logit = 1.6  # cost_efficiency x price sensitivity (and -0.5 flat)
    risk_frame: Logit = 1.2  # risk_reduction x return propensity
    premium_frame: Logit = 1.8  # premium_status x premium affinity (and -0.9 flat)
    convenience_frame: Logit = 0.7  # convenience on consumables and subscriptions
    completeness_frame: Logit = 0.3  # completeness on accessories and bundles
    # Pressure: an onsite offer at the cart or checkout may cost the order under way.
    abandon: dict[str, Share] = {"low": 0.005, "medium": 0.02, "high": 0.06}
    regret: dict[str, float] = {"low": 1.0, "medium": 1.3, "high": 1.8}  # x returns of it
    # Assist: fit guidance and reassurance.
    assist_engage: Logit = -1.2  # logit of engaging with an assist shown onsite
    assist_lift: Share = 0.10  # relative lift of the session's purchase when engaged
    assist_return_cut: Share = 0.35  # relative cut of the item's return chance (risk frame)
    # Returns, by kind, times the customer's return propensity.
    returns: dict[str, float] = {
        "core": 1.0,
        "premium": 1.2,
        "accessory": 0.4,
        "consumable": 0.08,
        "subscription": 0.05,
        "warranty": 0.05,
    }
    handling_cost: float = Field(default=6.0, ge=0)
    organic_accessory: Share = 0.2  # a buyer of a core item later buys an accessory anyway
    refill_keep: Share = 0.75  # a consumable buyer refills on their own, per cycle
    subscription_keep: Share = 0.92  # a subscriber keeps the next delivery
    discount: Share = 0.10  # what a cost_efficiency offer takes off the price


def load_world(path: str | Path | None) -> WorldSpec:
    """The world in `path` (YAML), or the default world."""
    if path is None:
        return WorldSpec()
    text, where = read_file(path, "world")
    return parse(text, where, "world file", WorldSpec, empty_ok=True)
