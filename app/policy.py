"""The policy matrix: a versioned YAML file validated by pydantic.

`load_policy(None)` gives the built-in default (app/policies/default.yaml, which documents every
key); `load_policy(path)` reads a file and raises ConfigurationError naming each mistake.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Annotated, Literal, Self, get_args

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from app.catalog import Kind
from app.yaml_config import parse, read_file
from schemas.types import Frame, Intensity, OutboundChannel, Play


def _one_of(kind: str, values: tuple[str, ...]) -> AfterValidator:
    def check(value: str) -> str:
        if value not in values:
            raise ValueError(f"unknown {kind} {value!r}; expected one of: {', '.join(values)}")
        return value

    return AfterValidator(check)


MOMENTS = ("browse", "cart", "checkout", "post_purchase", "refill")
OFFER_RELATIONS = (
    "self",
    "accessories",
    "bundle_with",
    "affinity",
    "subscription",
    "warranty",
    "upgrade",
    "refill",
)
SIGNALS = ("confidence", "urgency", "price_sensitivity", "maturity", "risk", "posture", "ltv")
TRIGGERS = ("order_returned", "refund", "support_contact", "complaint")
INTENSITY_ORDER: tuple[str, ...] = get_args(Intensity)

# Names in a policy: plain strings, checked against their vocabulary when the policy loads.
MomentName = Annotated[str, _one_of("moment", MOMENTS)]
OfferRelation = Annotated[str, _one_of("offer relation", OFFER_RELATIONS)]
Signal = Annotated[str, _one_of("readiness signal", SIGNALS)]
ChannelName = Annotated[str, _one_of("channel", get_args(OutboundChannel))]
PlayName = Annotated[str, _one_of("play", get_args(Play))]
UpsellPlay = Annotated[str, _one_of("play that makes an offer", ("assist", "expand", "commit"))]
FrameName = Annotated[str, _one_of("frame", get_args(Frame))]
IntensityName = Annotated[str, _one_of("intensity", INTENSITY_ORDER)]
KindName = Annotated[str, _one_of("product kind", get_args(Kind))]
Trigger = Annotated[str, _one_of("protect trigger", TRIGGERS)]
Tier = Literal["low", "medium", "high"]
MarginTier = Literal["thin", "normal", "high"]

Hours = Annotated[float, Field(ge=0, le=24 * 3650)]
Share = Annotated[float, Field(ge=0, le=1)]
Logit = Annotated[float, Field(ge=-20, le=20)]


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class QuietHours(_Spec):
    start: int = Field(ge=0, le=23)
    end: int = Field(ge=0, le=23)


class TimeSpec(_Spec):
    quiet_hours: QuietHours
    assume_utc_offset_minutes: int | None = Field(default=None, ge=-840, le=840)
    shipping_cutoff_hour_utc: int = Field(ge=0, le=23)


class HoldoutSpec(_Spec):
    share: float = Field(ge=0, le=0.5)
    salt: str = Field(min_length=1)


class AttributionSpec(_Spec):
    window_hours: float = Field(gt=0, le=24 * 90)
    return_window_days: float = Field(gt=0, le=365)
    max_open: int = Field(default=24, ge=1, le=256)  # open windows per customer


class ExperimentsSpec(_Spec):
    """Randomised tests beside the global holdout, assigned per customer by hash."""

    salt: str = Field(min_length=1)
    # Held out: the play is decided as usual but never delivered to this share of customers.
    play_holdouts: dict[UpsellPlay, Annotated[float, Field(ge=0, le=0.5)]] = {}
    # Suppressed: the channel is closed to this share of customers (what does it really add?).
    channel_suppression: dict[ChannelName, Annotated[float, Field(ge=0, le=0.5)]] = {}
    # Onsite offers chosen while a purchase is under way (browse, cart, checkout) held back at
    # random, per decision, at this share: what they cost that purchase (app/distraction.py).
    distraction_test: float = Field(default=0.0, ge=0, le=0.5)


class FreshnessSpec(_Spec):
    """A lagging worker must not fire offers whose moment has passed: for an event that
    waited in Kafka longer than this, these channels are closed and these frames dropped."""

    max_lag_seconds: float | None = Field(default=300.0, gt=0)  # None: never stale
    close_channels: list[ChannelName] = ["onsite_pdp", "onsite_cart", "post_purchase"]
    deny_frames: list[FrameName] = ["outcome_acceleration"]


class DistractionSpec(_Spec):
    """Learning what onsite offers cost the purchase under way (app/distraction.py)."""

    completion_hours: float = Field(default=2.0, gt=0, le=72)  # an order this soon completes it
    # How sure the priors are (a standard deviation of the effect on the completion rate):
    # the measured difference weighs in by its precision against this. At most `prior_sd`,
    # and at most `prior_sd_share` of the prior effect itself: a 0.2% risk at browse is not
    # as uncertain as 2 points, or a few noisy decisions make it 0 one week and 14 x the next.
    prior_sd: float = Field(default=0.02, gt=0, le=1)
    prior_sd_share: float = Field(default=1.0, gt=0, le=100)
    # An offer in the cart or at checkout can only cost an order that would have come: the
    # abandon risk (of such an order) is weighed by the share of those moments that end in an
    # order, counted from the decisions there and starting from this share (worth
    # `completion_weight` decisions).
    completion_prior: float = Field(default=0.5, gt=0, le=1)
    completion_weight: float = Field(default=20.0, gt=0, le=1e12)


class GuardrailsSpec(_Spec):
    """Limits beyond profit (app/guardrail.py)."""

    # Unsubscribes that tact's messages may cause per 1,000 customers per 30 days; above this
    # pace the price of unsubscribe risk rises until the count is back on pace. None: no limit.
    unsubscribes_per_1000: float | None = Field(default=0.5, gt=0, le=1000)
    gain: float = Field(default=16.0, gt=0, le=100)  # how steeply the price rises with the excess


class ConsentSpec(_Spec):
    """Channels that need the customer's opt-in: closed until a `consent` event grants it, and
    again after one withdraws it (an unsubscribe closes a channel in any case)."""

    required: list[Annotated[str, _one_of("channel", ("email", "sms", "paid_retargeting"))]] = [
        "email",
        "sms",
    ]
    withdrawn_quiet_days: float = Field(default=3650.0, gt=0)  # how long a withdrawal suppresses


class ExplorationSpec(_Spec):
    """Thompson sampling over the (offer, frame) arms the rules allow."""

    enabled: bool = True  # false: always the arm of highest expected profit (propensity 1)
    # What the priors are worth per (segment, play, frame) cell, in outcomes: conversions
    # out of trials. Fewer means wider posteriors and more exploration at the start.
    prior_conversions: float = Field(default=6.0, gt=0, le=100_000)
    prior_trials: float = Field(default=120.0, gt=0, le=1_000_000)
    # Arms whose posterior cannot reach the best within this many standard deviations are
    # out of contention (at 2.5, an arm that far short would win under 0.02% of draws): they
    # are never drawn.
    contention_z: float = Field(default=2.5, ge=1, le=6)
    max_arms: int = Field(default=6, ge=1, le=32)
    # A cell remembers about this many outcomes (older ones fade), so it never becomes too
    # sure to notice that the world changed.
    memory: float = Field(default=600.0, ge=10)

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.prior_conversions >= self.prior_trials:
            raise ValueError("prior_conversions must be below prior_trials")
        return self


class DecaySpec(_Spec):
    confidence: float = Field(gt=0)
    urgency: float = Field(gt=0)
    price_sensitivity: float = Field(gt=0)
    risk: float = Field(gt=0)
    posture: float = Field(gt=0)


class SegmentsSpec(_Spec):
    margin_thin_below: Share
    margin_high_from: Share
    risk_medium_from: Share
    risk_high_from: Share
    ltv_medium_from: float = Field(ge=0)
    ltv_high_from: float = Field(gt=0)
    discount_trained_from: Share
    ready_confidence_from: Share


class ChannelSpec(_Spec):
    cost: float = Field(ge=0)
    outbound: bool
    daily_cap: int = Field(ge=0, le=100)
    ttl_hours: float = Field(gt=0, le=24 * 90)
    delay_hours: Hours = 0.0
    unsubscribe_risk: Share = 0.0
    subscriber_value: float = Field(default=0.0, ge=0)


class MomentSpec(_Spec):
    channels: list[ChannelName] = Field(min_length=1)
    pressure: float = Field(ge=0, le=100)
    max_offers: int | None = Field(default=None, ge=0, le=32)  # default: the policy's
    protect_suppresses: dict[ChannelName, Hours] = {}
    assist: bool = True  # fit guidance / reassurance on the item in focus is a candidate


class IntensitySpec(_Spec):
    high_when: dict[Signal, Share]
    medium_when: dict[Signal, Share]
    abandon_risk: dict[IntensityName, Share]
    fatigue: dict[IntensityName, float]


class AcceptPrior(_Spec):
    base: Logit
    channel: dict[ChannelName, Logit]
    play: dict[PlayName, Logit]
    relation: dict[OfferRelation, Logit]
    frame: dict[FrameName, Logit]
    intensity: dict[IntensityName, Logit]
    price_step: Logit = 0.0  # per doubling of the offer's price above the item it goes with
    price_level: Logit = 0.0  # new asks (context.NEW_ASKS): per doubling above the median price
    seen: Logit = 0.0  # the customer has looked at the offered item
    with_base: Logit = 0.0  # the item it goes with is in the cart or was bought lately
    passed: Logit = 0.0  # per earlier offer of the item not bought since (at most 4)
    passed_days: float = Field(default=30.0, ge=0, le=365)  # ...within this of each other; 0: none
    readiness: dict[Signal, Logit] = {}
    frame_fit: dict[FrameName, dict[Signal, Logit]] = {}
    relation_fit: dict[OfferRelation, dict[Signal, Logit]] = {}


class ReturnPrior(_Spec):
    base: Logit
    kind: dict[KindName, Logit] = {}
    risk: Logit = 0.0


class OrganicPrior(_Spec):
    base: Share
    per_view: Share
    refill_at_maturity: Share


class AnywayPrior(_Spec):
    """What customers buy on their own (app/anyway.py), before orders teach it."""

    enabled: bool = True  # false: a sale counts whole, whatever the customer would buy later
    horizon_days: float = Field(default=30.0, gt=0, le=365)  # how far ahead a sale counts
    follow_on: dict[OfferRelation, Share] = {
        "accessories": 0.12,
        "bundle_with": 0.06,
        "warranty": 0.02,
    }  # P(bought within the horizon once the base is owned)
    refill: Share = 0.6  # P(a consumable is bought again within 1.5 cycles)
    view_to_buy: Share = 0.12  # P(an item looked at is ordered)
    strength: float = Field(default=20.0, gt=0, le=10_000)  # a prior's worth, in observations
    subscription_keep: Share = 0.85  # P(a subscriber keeps the next delivery)


class ValuePrior(_Spec):
    first_order_value: float = Field(default=50.0, gt=0)  # until orders teach the average
    new_customer_orders_per_year: float = Field(gt=0, le=365)
    max_orders_per_year: float = Field(gt=0, le=365)
    margin_rate: Share


class PriorsSpec(_Spec):
    accept: AcceptPrior
    return_: ReturnPrior = Field(alias="return")
    organic: OrganicPrior
    anyway: AnywayPrior = AnywayPrior()
    value: ValuePrior


class LearningSpec(_Spec):
    enabled: bool = True  # false: models stay at the priors, nothing global is learned
    batch_size: int = Field(default=64, ge=1, le=100_000)
    optimizer: Literal["adagrad", "sgd"] = "adagrad"
    rate: float = Field(default=0.1, gt=0, le=10)
    # AdaGrad's step sizes recover over about this many outcomes (its history fades), so the
    # models keep learning when the world changes instead of freezing.
    memory: float = Field(default=4000.0, ge=64)
    # With `tact learner` (TACT_LEARNER=true): it publishes the models it folds this often,
    # whichever comes first (changes applied; seconds of its running).
    snapshot_changes: int = Field(default=2000, ge=1)
    snapshot_seconds: float = Field(default=5.0, gt=0, le=3600)


class CapsSpec(_Spec):
    onsite_per_day: int = Field(ge=0, le=100)
    # The surfaces that cap counts together (None: every channel that is not outbound); the
    # others keep their own daily cap alone.
    onsite_surfaces: list[ChannelName] | None = None


class SequencingSpec(_Spec):
    onsite_upsell_suppresses_paid_hours: Hours
    post_purchase_suppresses_paid_hours: Hours
    followup_email_after_onsite: bool
    refill_lead_days: float = Field(ge=0, le=365)
    refill_due_from: float = Field(gt=0, le=2)


class FrameBudget(_Spec):
    max: int = Field(ge=0)
    per_days: float = Field(gt=0, le=365)


class RuleWhen(_Spec):
    risk: list[Tier] | None = None
    margin: list[MarginTier] | None = None
    ltv: list[Tier] | None = None
    customer: list[Literal["new", "returning"]] | None = None
    ready: bool | None = None
    discount_trained: bool | None = None
    moment: list[MomentName] | None = None


class RuleThen(_Spec):
    deny_channels: list[ChannelName] = []
    allow_channels: list[ChannelName] | None = None
    deny_plays: list[PlayName] = []
    deny_frames: list[FrameName] = []
    deny_relations: list[OfferRelation] = []
    max_intensity: dict[PlayName, IntensityName] = {}
    prefer_plays: dict[PlayName, Logit] = {}
    prefer_frames: dict[FrameName, Logit] = {}
    frame_budget: dict[FrameName, FrameBudget] = {}


class Rule(_Spec):
    name: Annotated[str, Field(pattern=r"^[a-z0-9_]{1,40}$")]
    when: RuleWhen
    then: RuleThen

    @property
    def candidate_level(self) -> bool:
        """Rules on the offer's margin are checked per candidate, the rest per customer."""
        return self.when.margin is not None


class Policy(_Spec):
    """The whole policy. See app/policies/default.yaml for what each key means."""

    version: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")]
    models_name: Annotated[str, Field(min_length=1, max_length=32, pattern=r"^[A-Za-z0-9_-]+$")]
    time: TimeSpec
    holdout: HoldoutSpec
    experiments: ExperimentsSpec = ExperimentsSpec(salt="tact-experiments-v1")
    exploration: ExplorationSpec = ExplorationSpec()
    freshness: FreshnessSpec = FreshnessSpec()
    consent: ConsentSpec = ConsentSpec()
    distraction: DistractionSpec = DistractionSpec()
    guardrails: GuardrailsSpec = GuardrailsSpec()
    attribution: AttributionSpec
    decay_hours: DecaySpec
    segments: SegmentsSpec
    channels: dict[ChannelName, ChannelSpec]
    moments: dict[MomentName, MomentSpec]
    relation_frames: dict[OfferRelation, list[FrameName]]
    max_offers: int = Field(ge=0, le=32)
    # value: the most valuable related offers first; catalog: in the catalog's relation order
    offer_order: Literal["value", "catalog"] = "value"
    min_expected_profit: float = Field(default=0.0, ge=0)
    cost_efficiency_discount: float = Field(ge=0, lt=1)
    # A discount offer seen teaches the customer to wait for the next one: it costs this share
    # of their next 90 days' margin (x 0.5 + their price sensitivity).
    discount_habit: float = Field(default=0.0, ge=0, le=1)
    subscription_cycles: float = Field(ge=1, le=120)
    assist_lift: Share
    assist_return_cut: Share
    return_handling_cost: float = Field(ge=0)
    intensity: IntensitySpec
    priors: PriorsSpec
    learning: LearningSpec = LearningSpec()
    caps: CapsSpec
    sequencing: SequencingSpec
    protect: dict[Trigger, dict[ChannelName, Hours]]
    rules: list[Rule] = []

    def counts_onsite(self, channel: str) -> bool:
        """Whether `channel` counts toward `caps.onsite_per_day`."""
        surfaces = self.caps.onsite_surfaces
        return channel in surfaces if surfaces is not None else not self.channels[channel].outbound

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        missing = sorted(set(get_args(OutboundChannel)) - set(self.channels))
        if missing:
            raise ValueError(f"channels: every channel needs costs and caps; missing {missing}")
        outbound = sorted(c for c in self.caps.onsite_surfaces or () if self.channels[c].outbound)
        if outbound:
            raise ValueError(f"caps.onsite_surfaces: outbound channels are not onsite: {outbound}")
        names = [r.name for r in self.rules]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"rules: names must be unique; repeated {duplicates}")
        s = self.segments
        if not s.margin_thin_below <= s.margin_high_from:
            raise ValueError("segments: margin_thin_below must not exceed margin_high_from")
        if not s.risk_medium_from <= s.risk_high_from:
            raise ValueError("segments: risk_medium_from must not exceed risk_high_from")
        if not s.ltv_medium_from <= s.ltv_high_from:
            raise ValueError("segments: ltv_medium_from must not exceed ltv_high_from")
        return self


def load_policy(path: str | Path | None = None) -> Policy:
    """The policy in `path`, or the built-in default when None."""
    if path is None:
        text = resources.files("app.policies").joinpath("default.yaml").read_text("utf-8")
        where = "built-in default policy"
    else:
        text, where = read_file(path, "policy")
    return parse(text, where, "policy", Policy)
