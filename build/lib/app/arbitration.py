"""Expected incremental profit of candidates: the arbitration.

For each candidate (play, offer, channel, frame, intensity):

    EIP = P(accept) x value if accepted           (margin after unit cost, discount, returns)
        - channel cost
        - pressure cost   (risk of losing the cart, scaled by intensity; fatigue on outbound)
        - cannibalisation (P(buying it anyway) x the margin that would have come without us)

The engine picks the best candidate when its EIP is above the policy's min_expected_profit
(0.10 by default: positive but negligible is not worth the attention); otherwise it protects.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from math import exp

from app.catalog import Product
from app.context import ONSITE, SIGNAL_FEATURES, Context, Offer, Scored, Terms, tag
from app.models import PRIOR, PRIOR_SCALE, Models
from app.policy import INTENSITY_ORDER, Policy
from app.readiness import DAY, Readiness
from app.referee import Referee, Verdict, margin_tier

_VALUE_FRAMES = frozenset({"cost_efficiency", "risk_reduction"})  # frames that change the value


@dataclass(frozen=True, slots=True)
class _Tables:
    """The acceptance model's weights, looked up once per weight version."""

    weights_at: int
    intercept: float
    w: dict[str, float]
    w_prior: float
    w_post: float
    w_ltv: float
    w_signals: tuple[tuple[str, float], ...]
    channel: dict[str, tuple[str, float, float, float, float, bool]]
    by_intensity: dict[str, tuple[float, float, float, float]]
    intensity_bounds: list[tuple[float, float]]
    offer_models: dict[tuple[str, str], float]  # (play, relation) -> their weights, lazily

    def offer_model(self, play: str, relation: str) -> float:
        value = self.offer_models.get((play, relation))
        if value is None:
            value = self.offer_models[(play, relation)] = self.w.get(
                f"play:{play}", 0.0
            ) + self.w.get(f"rel:{relation}", 0.0)
        return value


class Arbiter:
    def __init__(self, policy: Policy, models: Models) -> None:
        self.policy = policy
        self.models = models
        self.referee = Referee(policy)
        self._weights_at = -1
        self._accept: _Tables
        prior = policy.priors.accept
        self._posture_prior = prior.readiness.get("posture", 0.0)
        self._channel_consts = {
            c: (
                f"ch:{c}",
                prior.channel.get(c, 0.0),
                spec.cost,
                spec.unsubscribe_risk * spec.subscriber_value,
                c in ONSITE,
            )
            for c, spec in policy.channels.items()
        }
        self._intensity_consts = {
            i: (
                f"int:{i}",
                prior.intensity.get(i, 0.0),
                policy.intensity.abandon_risk.get(i, 0.0),
                policy.intensity.fatigue.get(i, 1.0),
            )
            for i in INTENSITY_ORDER
        }
        self._margins: dict[str, str] = {}  # sku -> margin tier
        self._play_prior = {
            play: prior.base + prior.play.get(play, 0.0) for play in ("assist", "expand", "commit")
        }
        self._readiness_prior = tuple(
            (k, v) for k, v in prior.readiness.items() if k not in ("posture",)
        )
        self.keep_all = False  # keep every candidate (for explanations), not just the best
        self._returns_at = -1
        self._returns_w: dict[str, float] = {}
        self._returns_b = 0.0

    # -- scoring ------------------------------------------------------------------------------
    def score(
        self, ctx: Context, offers: Iterable[Offer], channels: list[str], at_stake: float
    ) -> list[Scored]:
        """Score every allowed candidate; returns them all when `keep_all` (explanations),
        else only the best one, and only if it earns more than the policy's
        min_expected_profit. `ctx.considered` counts the candidates allowed."""
        terms = self._terms(ctx)
        stake = terms.stake_per_unit * at_stake
        p = self.policy
        most_by_readiness = self._max_intensity(terms.signals)
        scored: list[Scored] = []
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
            if self.keep_all:
                best = -1e18
            else:  # below the policy's threshold nothing is chosen: no need to rank it
                best = scored[0].eip if scored else self.policy.min_expected_profit
            found = self._score_offer(
                ctx,
                terms,
                offer,
                offer_channels,
                frames,
                INTENSITY_ORDER[: top + 1],
                verdict,
                best,
                stake,
            )
            if self.keep_all:
                scored.extend(found)
            elif found:
                scored = found
        return scored

    def evaluate(
        self, ctx: Context, offer: Offer, channel: str, frame: str, intensity: str
    ) -> Scored | None:
        """One candidate, as `score` would score it (used for follow-ups)."""
        verdict = self.referee.for_offer(
            ctx.segments, ctx.moment, margin_tier(self.policy, offer.product)
        )
        found = self._score_offer(
            ctx, self._terms(ctx), offer, [channel], [frame], (intensity,), verdict, -1e18, 0.0
        )
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

    def _tables(self) -> _Tables:
        """Everything that depends only on the acceptance model's weights, rebuilt when they
        change (once per learning mini-batch)."""
        model = self.models.accept
        if self._weights_at != model.updates:
            w = dict(model.model._weights)
            w_prior = w.get(PRIOR, PRIOR_SCALE) / PRIOR_SCALE
            by_intensity = {
                i: (prior_i, w.get(key, 0.0), abandon, fatigue)
                for i, (key, prior_i, abandon, fatigue) in self._intensity_consts.items()
            }
            bounds = []  # per "up to intensity i": (best intensity logit, lowest fatigue)
            for top in range(len(INTENSITY_ORDER)):
                allowed = [by_intensity[i] for i in INTENSITY_ORDER[: top + 1]]
                bounds.append(
                    (max(w_prior * a[0] + a[1] for a in allowed), min(a[3] for a in allowed))
                )
            self._weights_at = model.updates
            self._accept = _Tables(
                weights_at=model.updates,
                intercept=model.model.intercept,
                w=w,
                w_prior=w_prior,
                w_post=w.get("r:post", 0.0),
                w_ltv=w.get("r:ltv", 0.0),
                w_signals=tuple((name, w.get(key, 0.0)) for name, key in SIGNAL_FEATURES),
                channel={
                    c: (consts[0], w.get(consts[0], 0.0), *consts[1:])
                    for c, consts in self._channel_consts.items()
                },
                by_intensity=by_intensity,
                intensity_bounds=bounds,
                offer_models={},
            )
        return self._accept

    def _terms(self, ctx: Context) -> Terms:
        """Everything about the moment that does not depend on the offer or frame (computed
        once per moment and weight version)."""
        tables = self._tables()
        cached = ctx.terms
        if cached is not None and cached.weights_at == tables.weights_at:
            return cached
        p, r = self.policy, ctx.readiness
        signals = {
            "confidence": r.confidence,
            "urgency": r.urgency,
            "price_sensitivity": r.price_sensitivity,
            "maturity": r.maturity,
            "risk": r.risk,
            "ltv": r.ltv_score,
        }
        customer_logit = tables.intercept + tables.w_ltv * r.ltv_score
        for name, weight in tables.w_signals:
            customer_logit += weight * signals[name]
        posture, w_post, posture_prior = r.posture, tables.w_post, self._posture_prior
        by_channel = {}
        for channel, (_, weight, base, cost, fatigue_base, onsite) in tables.channel.items():
            level = posture.get(channel, 0.5)
            by_channel[channel] = (
                base + posture_prior * (level - 0.5),
                weight + w_post * level,
                cost,
                fatigue_base,
                onsite,
            )
        per_unit = p.moments[ctx.moment].pressure * (1.5 - r.confidence)
        readiness_prior = 0.0
        for k, v in self._readiness_prior:
            readiness_prior += v * signals[k]
        ctx.terms = Terms(
            signals,
            customer_logit,
            readiness_prior,
            tables.w_prior,
            by_channel,
            tables.by_intensity,
            per_unit,
            tables.weights_at,
            {},
            {},
            tables.intensity_bounds,
            {},
        )
        return ctx.terms

    @staticmethod
    def _fit(terms: Terms, base: float, fits: dict[str, float]) -> float:
        """A frame's or relation's prior on this moment's readiness."""
        sig = terms.signals
        return base + sum(v * sig[k] for k, v in fits.items() if k in sig)

    def _score_offer(
        self,
        ctx: Context,
        terms: Terms,
        offer: Offer,
        channels: list[str],
        frames: list[str],
        intensities: tuple[str, ...],
        verdict: Verdict,
        best_eip: float,
        stake: float,
    ) -> list[Scored]:
        """The offer's candidates beating `best_eip` (all of them when keep_all); `stake`
        scales the abandon risk of onsite offers."""
        if not channels or not frames:
            return []
        ctx.considered += len(channels) * len(frames) * len(intensities)
        prior, tables = self.policy.priors.accept, self._accept
        play, relation = offer.play, offer.relation
        kind = offer.product.kind
        p_return = terms.p_return.get(kind)
        if p_return is None:
            p_return = terms.p_return[kind] = self.p_return(offer.product, ctx.readiness)
        organic = self._p_organic(ctx, offer)
        plain_value = self._value(offer, "completeness", p_return)
        cannibalisation = organic * max(plain_value, 0.0) if relation != "self" else 0.0
        relation_prior = terms.relation_prior.get(relation)
        if relation_prior is None:
            relation_prior = terms.relation_prior[relation] = self._fit(
                terms, prior.relation.get(relation, 0.0), prior.relation_fit.get(relation, {})
            )
        offer_prior = (
            self._play_prior[play]
            + verdict.prefer_plays.get(play, 0.0)
            + terms.readiness_prior
            + relation_prior
        )
        w = tables.w
        offer_model = terms.customer_logit + tables.offer_model(play, relation)
        w_prior, keep_all = terms.w_prior, self.keep_all
        by_channel, by_intensity = terms.by_channel, terms.by_intensity
        prefer_frames, frame_priors = verdict.prefer_frames, terms.frame_prior
        per_frame = []
        top_frame = top_value = -1e18
        for frame in frames:
            frame_prior = frame_priors.get(frame)
            if frame_prior is None:
                frame_prior = frame_priors[frame] = self._fit(
                    terms, prior.frame.get(frame, 0.0), prior.frame_fit.get(frame, {})
                )
            if prefer_frames:
                frame_prior += prefer_frames.get(frame, 0.0)
            value = (
                plain_value if frame not in _VALUE_FRAMES else self._value(offer, frame, p_return)
            )
            frame_model = offer_model + w.get(f"fr:{frame}", 0.0)
            per_frame.append((frame, value, frame_prior, frame_model))
            bound = frame_model + w_prior * (offer_prior + frame_prior)
            if bound > top_frame:
                top_frame = bound
            if value > top_value:
                top_value = value
        # Upper bounds, to skip channels that cannot beat the best candidate so far.
        top_intensity, low_fatigue = terms.intensity_bounds[len(intensities) - 1]
        out: list[Scored] = []
        for channel in channels:
            ch_prior, ch_model, cost, fatigue_base, onsite = by_channel[channel]
            if not keep_all:
                bound = top_frame + ch_model + w_prior * ch_prior + top_intensity
                if (
                    top_value / (1.0 + exp(-bound))
                    - cost
                    - fatigue_base * low_fatigue
                    - cannibalisation
                ) <= best_eip:
                    continue
            for frame, value, frame_prior, frame_model in per_frame:
                for intensity in intensities:
                    i_prior, i_model, abandon, fatigue = by_intensity[intensity]
                    logit_prior = offer_prior + frame_prior + ch_prior + i_prior
                    p_accept = 1.0 / (
                        1.0 + exp(-(frame_model + ch_model + i_model + w_prior * logit_prior))
                    )
                    pressure = fatigue_base * fatigue + (stake * abandon if onsite else 0.0)
                    eip = p_accept * value - cost - pressure - cannibalisation
                    if keep_all or eip > best_eip:
                        best_eip = eip
                        candidate = Scored(
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
                        )
                        if keep_all:
                            out.append(candidate)
                        else:
                            out = [candidate]
        return out

    def p_return(self, product: Product, r: Readiness) -> float:
        """P(return) of `product` for this customer: the returns model on return_features."""
        prior = self.policy.priors.return_
        logit_prior = prior.base + prior.kind.get(product.kind, 0.0) + prior.risk * r.risk
        model = self.models.returns
        if model.updates != self._returns_at:
            self._returns_w = dict(model.model._weights)
            self._returns_b = model.model.intercept
            self._returns_at = model.updates
        w = self._returns_w
        logit = (
            self._returns_b
            + w.get(PRIOR, PRIOR_SCALE) / PRIOR_SCALE * logit_prior
            + w.get(f"kind:{product.kind}", 0.0)
            + w.get("r:risk", 0.0) * r.risk
        )
        return 1.0 / (1.0 + exp(-logit))

    def _p_organic(self, ctx: Context, offer: Offer) -> float:
        organic = self.policy.priors.organic
        if offer.relation == "self":
            return 0.0
        if offer.relation == "refill":
            return organic.refill_at_maturity * min(ctx.readiness.maturity, 1.0)
        views = ctx.state.viewed.get(offer.product.sku, 0)
        return min(organic.base + organic.per_view * views, 0.6)

    def _value(self, offer: Offer, frame: str, p_return: float) -> float:
        """Profit if the offer is taken up under `frame`, after returns."""
        p, product = self.policy, offer.product
        handling = p_return * p.return_handling_cost
        if offer.relation == "self":
            margin = product.margin
            value = margin * p.assist_lift * (1.0 - p_return)
            if frame == "risk_reduction":  # fit guidance and reassurance prevent returns
                value += p.assist_return_cut * p_return * (margin + p.return_handling_cost)
            return value
        discount = p.cost_efficiency_discount if frame == "cost_efficiency" else 0.0
        unit = product.price * (1.0 - discount) - product.unit_cost
        if offer.relation == "subscription":
            return unit * p.subscription_cycles * (1.0 - p_return) - handling
        if offer.relation == "upgrade" and offer.base is not None:
            unit -= offer.base.margin
        return unit * (1.0 - p_return) - handling
