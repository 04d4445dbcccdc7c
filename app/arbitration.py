"""Expected incremental profit of candidates: the arbitration.

For each candidate (play, offer, channel, frame, intensity):

    EIP = P(accept) x value if accepted           (margin after unit cost, discount, returns)
        - channel cost
        - pressure cost   (risk of losing the cart, scaled by intensity; fatigue on outbound)
        - cannibalisation (P(buying it anyway) x the margin that would have come without us)

Candidates group into arms, one per (offer, frame) on its best channel and intensity. Protect
earns the policy's min_expected_profit (0.10 by default: positive but negligible is not worth
the attention). Which arm is taken is drawn by Thompson sampling (app/bandit.py); with
exploration off, the arm of highest EIP when it beats protect.
"""

from __future__ import annotations

from collections.abc import Iterable
from math import exp
from typing import Any, Final

from app.anyway import Anyway
from app.context import Context, Offer, Scored, Terms, tag
from app.distraction import Distraction
from app.economics import Economics
from app.guardrail import UnsubscribeBudget
from app.models import Models
from app.policy import INTENSITY_ORDER, Policy
from app.readiness import DAY
from app.referee import Referee, Verdict, margin_tier
from app.terms import TermsBuilder

# frames that change the value
_VALUE_FRAMES: Final = frozenset({"cost_efficiency", "risk_reduction"})


# Where a Scored's fields put its expected profit and spread (arms enter as bare fields).
_EIP: Final = list(Scored.__dataclass_fields__).index("eip")
_SPREAD: Final = list(Scored.__dataclass_fields__).index("spread")


class _Race:
    """The arms of one moment, and the running cut below which an arm cannot be in
    contention (app/bandit.py: within `z` spreads of the best lower bound, or of `floor`)."""

    def __init__(self, floor: float, z: float) -> None:
        self.floor = floor
        self.z = z
        self.cut = floor
        self.arms: list[Scored | tuple[Any, ...]] = []  # Scored, or its fields (made later)

    def enter(self, arm: Scored | tuple[Any, ...]) -> None:
        eip, spread = (arm[_EIP], arm[_SPREAD]) if isinstance(arm, tuple) else (arm.eip, arm.spread)
        if eip + self.z * spread < self.cut:
            return
        self.arms.append(arm)
        self.cut = max(self.cut, eip - self.z * spread)

    def contenders(self, limit: int) -> list[Scored]:
        """The arms still in contention, best expected profit first, at most `limit`."""
        arms = [a if isinstance(a, Scored) else Scored(*a) for a in self.arms]
        alive = [a for a in arms if a.eip + self.z * a.spread >= self.cut]
        alive.sort(key=lambda a: -a.eip)
        return alive[:limit]


class Arbiter:
    def __init__(self, policy: Policy, models: Models, anyway: Anyway) -> None:
        self.policy = policy
        self.models = models
        self.referee = Referee(policy)
        self._margins: dict[str, str] = {}  # sku -> margin tier
        self.budget = UnsubscribeBudget(policy, models.unsubscribes, models.change)
        self._build = TermsBuilder(policy, models, self.budget)
        self.keep_all = False  # keep every candidate in ctx.shown (for explanations)
        self.economics = Economics(policy, models, anyway)
        self.distraction = Distraction(policy, models.completion)
        self.economics.assist_factor = self.distraction.assist_factor
        exploration = policy.exploration
        self._z = exploration.contention_z if exploration.enabled else 0.0

    # -- scoring ------------------------------------------------------------------------------
    def score(
        self, ctx: Context, offers: Iterable[Offer], channels: list[str], at_stake: float
    ) -> list[Scored]:
        """The arms of this moment: for every (offer, frame) the rules allow, its best channel
        and intensity, with the posterior spread of its expected profit. Arms that cannot be
        in contention for the choice (app/bandit.py) are left out; when `keep_all`
        (explanations) every candidate is also kept in `ctx.shown`. `ctx.considered` counts
        the candidates allowed."""
        terms = self._build.terms(ctx)
        ctx.at_stake = at_stake
        stake = terms.stake_per_unit * at_stake
        distraction = self.distraction.factors(ctx.moment) if stake else {}  # learned / prior
        p = self.policy
        most_by_readiness = self._max_intensity(terms.signals)
        race = _Race(p.min_expected_profit, self._z)
        for offer in offers:
            product = offer.product
            margin = self._margins.get(product.sku)
            if margin is None:
                margin = self._margins[product.sku] = margin_tier(p, product)
            verdict = self.referee.for_offer(ctx.segments, ctx.moment, margin)
            play = offer.play
            if play in verdict.deny_plays:
                ctx.drops.append((tag(offer), f"rule:{verdict.deny_plays[play]}"))
                continue
            if offer.relation in verdict.deny_relations:
                ctx.drops.append((tag(offer), f"rule:{verdict.deny_relations[offer.relation]}"))
                continue
            offer_channels = channels
            if verdict.blocks_channels:
                offer_channels = []
                for channel in channels:
                    rule = verdict.channel_block(channel)
                    if rule is None:
                        offer_channels.append(channel)
                    else:
                        ctx.drops.append((f"{tag(offer)}@{channel}", f"rule:{rule}"))
            frames = self._frames(ctx, offer, verdict)
            cap, cap_rule = verdict.max_intensity.get(play, (2, ""))
            top = min(most_by_readiness, cap)
            if cap < most_by_readiness:
                ctx.drops.append(
                    (f"{tag(offer)}:intensity>{INTENSITY_ORDER[top]}", f"rule:{cap_rule}")
                )
            self._score_offer(
                ctx,
                terms,
                offer,
                offer_channels,
                frames,
                INTENSITY_ORDER[: top + 1],
                verdict,
                race,
                stake,
                distraction,
            )
        return race.contenders(self.policy.exploration.max_arms)

    def evaluate(
        self, ctx: Context, offer: Offer, channel: str, frame: str, intensity: str
    ) -> Scored | None:
        """One candidate, as `score` would score it, whatever the rules (used for follow-ups
        and for following a logged decision)."""
        verdict = self.referee.for_offer(
            ctx.segments, ctx.moment, margin_tier(self.policy, offer.product)
        )
        race = _Race(-1e18, 0.0)
        keep_all, self.keep_all = self.keep_all, False
        try:
            self._score_offer(
                ctx,
                self._build.terms(ctx),
                offer,
                [channel],
                [frame],
                (intensity,),
                verdict,
                race,
                0.0,
                {},
            )
        finally:
            self.keep_all = keep_all
        found = race.contenders(1)
        return found[0] if found else None

    def _frames(self, ctx: Context, offer: Offer, verdict: Verdict) -> list[str]:
        allowed = self.policy.relation_frames.get(offer.relation, [])
        if not verdict.deny_frames and not verdict.frame_budget:
            return allowed
        frames = []
        for frame in allowed:
            if frame in verdict.deny_frames:
                ctx.drops.append((f"frame:{frame}", f"rule:{verdict.deny_frames[frame]}"))
                continue
            budget = verdict.frame_budget.get(frame)
            if budget and ctx.state.frame_uses(frame, ctx.t - budget[1] * DAY) >= budget[0]:
                ctx.drops.append((f"frame:{frame}", "budget"))
                continue
            frames.append(frame)
        return frames

    def _max_intensity(self, signals: dict[str, float]) -> int:
        spec = self.policy.intensity
        if all(signals.get(k, 0.5) >= v for k, v in spec.high_when.items()):
            return 2
        if all(signals.get(k, 0.5) >= v for k, v in spec.medium_when.items()):
            return 1
        return 0

    @staticmethod
    def _most(top: float, plain_value: float, z: float, spread: float) -> float:
        """The most `max(reach, 0) + z x spread x |reach|` of the channel test in
        `_score_offer` can be, per unit of its p, whatever is bought anyway: what is pulled
        forward, taken off every frame's value, is between 0 and the plain value when
        positive (and cannibalisation only adds to the fixed costs), so the largest value,
        `top` before it, is between `top - max(plain_value, 0)` and `top`."""
        # (as max(top, 0) + z x spread x max(|top|, |top - max(plain_value, 0)|), without the
        # calls: this runs for every offer of every moment)
        lowest = top - plain_value if plain_value > 0.0 else top
        widest = abs(top)
        if abs(lowest) > widest:
            widest = abs(lowest)
        return (top if top > 0.0 else 0.0) + z * spread * widest

    def _score_offer(
        self,
        ctx: Context,
        terms: Terms,
        offer: Offer,
        channels: list[str],
        frames: list[str],
        intensities: tuple[str, ...],
        verdict: Verdict,
        race: _Race,
        stake: float,
        distraction: dict[str, float],
    ) -> None:
        """Enter the offer's arms (one per frame: its best channel and intensity) in `race`;
        `stake` scales the abandon risk of onsite offers, times its learned `distraction`
        factor per intensity."""
        if not channels or not frames:
            return
        ctx.considered += len(channels) * len(frames) * len(intensities)
        prior, economics, build = self.policy.priors.accept, self.economics, self._build
        tables = build.accept
        play, relation = offer.play, offer.relation
        kind = offer.product.kind
        p_return = terms.p_return.get(kind)
        if p_return is None:
            p_return = terms.p_return[kind] = economics.p_return(offer.product, ctx.readiness)
        replaced = economics.replaced_refills(ctx, offer)
        assist = relation == "self"
        plain_value = (
            economics.assist_value(ctx, offer, "completeness", p_return)
            if assist
            else economics.value(offer, "completeness", p_return, replaced)
        )
        relation_prior = terms.relation_prior.get(relation)
        if relation_prior is None:
            relation_prior = terms.relation_prior[relation] = build.fit(
                terms, prior.relation.get(relation, 0.0), build.relation_fit.get(relation, ())
            )
        offer_prior = (
            build.play_prior[play]
            + verdict.prefer_plays.get(play, 0.0)
            + terms.readiness_prior
            + relation_prior
            + prior.price_step * offer.price_step
            + prior.price_level * offer.price_level
        )
        w_price, w_level, w_seen, w_base, w_passed = tables.w_offer
        offer_model = (
            terms.customer_logit
            + tables.offer_model(play, relation)
            + w_price * offer.price_step
            + w_level * offer.price_level
        )
        if offer.seen:
            offer_prior += prior.seen  # the customer looked at it: interest, or a need
            offer_model += w_seen
        if offer.with_base:
            offer_prior += prior.with_base  # add-ons sell with what they go with
            offer_model += w_base
        if offer.passed:  # offered before and let pass
            offer_prior += prior.passed * offer.passed
            offer_model += w_passed * offer.passed
        w_prior, keep_all = terms.w_prior, self.keep_all
        by_channel, by_intensity = terms.by_channel, terms.by_intensity
        prefer_frames, frame_priors = verdict.prefer_frames, terms.frame_prior
        cells, segment = self.models.cells, ctx.segments.key
        w_frame = tables.w_frame
        logits = []  # per frame; its value before what is bought anyway is taken off
        top_frame, top_spread, top = -1e18, 0.0, -1e18
        for frame in frames:
            frame_prior = frame_priors.get(frame)
            if frame_prior is None:
                frame_prior = frame_priors[frame] = build.fit(
                    terms, prior.frame.get(frame, 0.0), build.frame_fit.get(frame, ())
                )
            if prefer_frames:
                frame_prior += prefer_frames.get(frame, 0.0)
            frame_model = offer_model + w_frame.get(frame, 0.0)
            spread = cells.spread(segment, play, frame) if race.z else 0.0
            bound = frame_model + w_prior * (offer_prior + frame_prior)
            if frame not in _VALUE_FRAMES:
                value = plain_value
            elif assist:
                value = economics.assist_value(ctx, offer, frame, p_return)
            else:
                value = economics.value(offer, frame, p_return, replaced)
            logits.append((frame, frame_prior, frame_model, spread, bound, value))
            # (comparisons, not max(): this loop runs for every offer of every moment)
            if bound > top_frame:
                top_frame = bound
            if spread > top_spread:
                top_spread = spread
            if value > top:
                top = value
        # Upper bounds skip what can neither improve an arm nor bring it into contention; the
        # same skips decide the arms when every candidate is kept for an explanation.
        top_intensity, low_fatigue = terms.intensity_bounds[len(intensities) - 1]
        z, cut = race.z, race.cut
        # Per channel: its logit, the denominator of p at the best frame and intensity, and
        # its fixed cost before cannibalisation. An offer no channel could take whatever is
        # bought anyway is passed over here, before the organic and follow-on chances are
        # reckoned (most offers of a big catalog; a hair of slack for rounding).
        most, may, lanes = self._most(top, plain_value, z, top_spread), keep_all, []
        for channel in channels:
            lane = by_channel[channel]
            ch_prior, ch_model, cost, fatigue_base, _ = lane
            ch_logit = ch_model + w_prior * ch_prior + top_intensity
            denominator = 1.0 + exp(-(top_frame + ch_logit))
            fixed = cost + fatigue_base * low_fatigue
            may = may or most / denominator - fixed >= cut - 1e-9
            lanes.append((channel, lane, ch_logit, denominator, fixed))
        if not may:
            return
        organic = economics.p_organic(ctx, offer)
        # Bought on their own later anyway: that part of a sale is no gain (app/economics.py).
        # The horizon of `anyway` holds the attribution window, so of the organic purchases
        # only those it does not already count are cannibalised (counted once, not twice).
        anyway = economics.anyway_share(ctx, offer)
        pulled = anyway * max(plain_value, 0.0)
        cannibalisation = (
            max(organic - anyway, 0.0) * max(plain_value, 0.0) if relation != "self" else 0.0
        )
        per_frame = []
        top_value = -1e18
        for frame, frame_prior, frame_model, spread, bound, before in logits:
            value = before - pulled
            habit = terms.discount_habit if frame == "cost_efficiency" else 0.0
            per_frame.append((frame, value, frame_prior, frame_model, spread, bound, habit))
            if value > top_value:
                top_value = value
        best: dict[str, tuple[float, tuple[Any, ...], Scored | None]] = {}
        for channel, lane, ch_logit, denominator, fixed in lanes:
            ch_prior, ch_model, cost, fatigue_base, onsite = lane
            fixed += cannibalisation
            # p x value is at most the largest p times the value when it is positive, and
            # below 0 when it is not (p can be near 0).
            reach = top_value / denominator
            gain = reach if reach > 0.0 else 0.0
            skip_channel = gain + z * top_spread * abs(reach) - fixed < cut
            if skip_channel and not keep_all:
                continue
            for frame, value, frame_prior, frame_model, spread, bound, habit in per_frame:
                incumbent = best.get(frame)
                reach = value / (1.0 + exp(-(bound + ch_logit)))
                most = (reach if reach > 0.0 else 0.0) - fixed - habit
                skip = (
                    skip_channel
                    or most < (incumbent[0] if incumbent else -1e18)
                    or most + z * spread * abs(reach) < cut
                )
                if skip and not keep_all:
                    continue
                for intensity in intensities:
                    i_prior, i_model, abandon, fatigue = by_intensity[intensity]
                    logit_prior = offer_prior + frame_prior + ch_prior + i_prior
                    p_accept = 1.0 / (
                        1.0 + exp(-(frame_model + ch_model + i_model + w_prior * logit_prior))
                    )
                    pressure = fatigue_base * fatigue + habit
                    if onsite and stake:
                        pressure += stake * abandon * distraction[intensity]
                    eip = p_accept * value - cost - pressure - cannibalisation
                    improves = not skip and (incumbent is None or eip > incumbent[0])
                    if not (keep_all or improves):
                        continue
                    fields = (
                        offer,
                        channel,
                        frame,
                        intensity,
                        logit_prior,
                        p_accept,
                        p_return,
                        organic,
                        value,
                        cost,
                        pressure,
                        cannibalisation,
                        eip,
                        abs(p_accept * value) * spread,
                    )
                    shown = Scored(*fields) if keep_all else None
                    if shown is not None:
                        ctx.shown.append(shown)
                    if improves:
                        incumbent = best[frame] = (eip, fields, shown)
        for eip, fields, shown in best.values():
            if eip + z * fields[-1] >= race.cut:  # (spread: last) else enter would refuse it
                race.enter(shown if shown is not None else fields)
