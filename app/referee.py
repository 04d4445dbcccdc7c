"""The referee: which segments a customer and an offer fall in, and what the policy's rules
allow for them. Rules on the customer are applied once per moment; rules on the offer's margin
once per offer. A verdict says what is denied and preferred, and which rules said so.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Final

from app.catalog import Product
from app.policy import INTENSITY_ORDER, MomentName, Policy, Rule
from app.readiness import Readiness


@dataclass(frozen=True, slots=True)
class Segments:
    customer: str  # new | returning
    risk: str  # low | medium | high
    ltv: str
    ready: bool
    discount_trained: bool

    key: str = field(init=False, compare=False, repr=False)
    """The segment of exploration cells and outcome records, e.g. `new:low:medium`
    (customer, risk, ltv)."""
    ident: str = field(init=False, compare=False, repr=False)
    """All five, e.g. `new:low:medium:1:0`: what caches of verdicts are keyed by (a string
    caches its hash; a dataclass hashes its fields in Python on every lookup)."""
    codes: tuple[str, ...] = field(init=False, compare=False, repr=False)
    """Its reason codes, e.g. `seg:new`, `seg:risk:low`, `seg:ltv:medium`."""

    def __post_init__(self) -> None:
        key = f"{self.customer}:{self.risk}:{self.ltv}"
        object.__setattr__(self, "key", key)
        object.__setattr__(self, "ident", f"{key}:{self.ready:d}:{self.discount_trained:d}")
        codes = [f"seg:{self.customer}", f"seg:risk:{self.risk}", f"seg:ltv:{self.ltv}"]
        if self.discount_trained:
            codes.append("seg:discount_trained")
        object.__setattr__(self, "codes", tuple(codes))


def segments_of(policy: Policy, r: Readiness) -> Segments:
    s = policy.segments
    risk = (
        "high"
        if r.risk >= s.risk_high_from
        else "medium"
        if r.risk >= s.risk_medium_from
        else "low"
    )
    ltv = "high" if r.ltv >= s.ltv_high_from else "medium" if r.ltv >= s.ltv_medium_from else "low"
    fields = (
        "new" if r.new_customer else "returning",
        risk,
        ltv,
        r.confidence >= s.ready_confidence_from,
        r.price_sensitivity >= s.discount_trained_from,
    )
    found = _SEGMENTS.get(fields)
    if found is None:
        found = _SEGMENTS[fields] = Segments(*fields)
    return found


# made once each (immutable)
_SEGMENTS: Final[dict[tuple[str, str, str, bool, bool], Segments]] = {}


def margin_tier(policy: Policy, product: Product) -> str:
    rate = product.margin_rate
    if rate < policy.segments.margin_thin_below:
        return "thin"
    return "high" if rate >= policy.segments.margin_high_from else "normal"


@dataclass(slots=True)
class Verdict:
    """What the applicable rules allow; `rules` names them (for reason codes)."""

    rules: list[str] = field(default_factory=list)
    deny_channels: dict[str, str] = field(default_factory=dict)  # channel -> rule
    allow_channels: tuple[set[str], str] | None = None
    deny_plays: dict[str, str] = field(default_factory=dict)
    deny_frames: dict[str, str] = field(default_factory=dict)
    deny_relations: dict[str, str] = field(default_factory=dict)
    max_intensity: dict[str, tuple[int, str]] = field(default_factory=dict)  # play -> (index, rule)
    prefer_plays: dict[str, float] = field(default_factory=dict)
    prefer_frames: dict[str, float] = field(default_factory=dict)
    frame_budget: dict[str, tuple[int, float]] = field(default_factory=dict)  # frame -> (max, days)
    blocks_channels: bool = False  # any deny_channels or allow_channels
    codes: list[str] = field(default_factory=list)  # "rule:<name>" reason codes

    def apply(self, rule: Rule) -> None:
        t = rule.then
        self.rules.append(rule.name)
        self.codes.append(f"rule:{rule.name}")
        self.blocks_channels = self.blocks_channels or bool(
            t.deny_channels or t.allow_channels is not None
        )
        for c in t.deny_channels:
            self.deny_channels.setdefault(c, rule.name)
        if t.allow_channels is not None:
            allowed = set(t.allow_channels)
            if self.allow_channels is not None:
                allowed &= self.allow_channels[0]
            self.allow_channels = (allowed, rule.name)
        for p in t.deny_plays:
            self.deny_plays.setdefault(p, rule.name)
        for f in t.deny_frames:
            self.deny_frames.setdefault(f, rule.name)
        for r in t.deny_relations:
            self.deny_relations.setdefault(r, rule.name)
        for play, most in t.max_intensity.items():
            index = INTENSITY_ORDER.index(most)
            if index < self.max_intensity.get(play, (2, ""))[0]:
                self.max_intensity[play] = (index, rule.name)
        for play, bonus in t.prefer_plays.items():
            self.prefer_plays[play] = self.prefer_plays.get(play, 0.0) + bonus
        for frame, bonus in t.prefer_frames.items():
            self.prefer_frames[frame] = self.prefer_frames.get(frame, 0.0) + bonus
        for frame, budget in t.frame_budget.items():
            self.frame_budget[frame] = (budget.max, budget.per_days)

    def merged(self, rules: list[Rule]) -> Verdict:
        """This verdict plus `rules` (used for offer-level rules; self is not changed)."""
        if not rules:
            return self
        out = copy.deepcopy(self)
        for rule in rules:
            out.apply(rule)
        return out

    def channel_block(self, channel: str) -> str | None:
        """The rule that keeps `channel` out, if any."""
        if channel in self.deny_channels:
            return self.deny_channels[channel]
        if self.allow_channels is not None and channel not in self.allow_channels[0]:
            return self.allow_channels[1]
        return None


class Referee:
    """Applies the policy's rules. Verdicts depend only on segments, moment and margin tier,
    so they are computed once per combination and shared (never modify one)."""

    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self.customer_rules = [r for r in policy.rules if not r.candidate_level]
        self.offer_rules = [r for r in policy.rules if r.candidate_level]
        self._customer: dict[tuple[str, str], Verdict] = {}  # by (segments' ident, moment)
        self._offer: dict[tuple[str, str, str], Verdict] = {}  # ... and margin tier

    def for_customer(self, seg: Segments, moment: MomentName) -> Verdict:
        verdict = self._customer.get((seg.ident, moment))
        if verdict is None:
            verdict = Verdict()
            for rule in self.customer_rules:
                if _matches(rule, seg, moment, None):
                    verdict.apply(rule)
            self._customer[(seg.ident, moment)] = verdict
        return verdict

    def for_offer(self, seg: Segments, moment: MomentName, margin: str) -> Verdict:
        verdict = self._offer.get((seg.ident, moment, margin))
        if verdict is None:
            verdict = self.for_customer(seg, moment).merged(
                [r for r in self.offer_rules if _matches(r, seg, moment, margin)]
            )
            self._offer[(seg.ident, moment, margin)] = verdict
        return verdict


def _matches(rule: Rule, seg: Segments, moment: str, margin: str | None) -> bool:
    w = rule.when
    return (
        (w.risk is None or seg.risk in w.risk)
        and (w.ltv is None or seg.ltv in w.ltv)
        and (w.customer is None or seg.customer in w.customer)
        and (w.ready is None or seg.ready == w.ready)
        and (w.discount_trained is None or seg.discount_trained == w.discount_trained)
        and (w.moment is None or moment in w.moment)
        and (w.margin is None or (margin is not None and margin in w.margin))
    )
