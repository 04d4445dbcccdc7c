"""The parts of the acceptance logit that do not depend on the offer: computed once per weight
version (Tables) and once per decision moment (Terms), so scoring a candidate is a few
additions and one exp."""

from __future__ import annotations

from dataclasses import dataclass
from typing import get_args

from app.context import CENTRE, OFFER_FEATURES, ONSITE, SIGNAL_FEATURES, Context, Terms
from app.guardrail import UnsubscribeBudget
from app.models import PRIOR, PRIOR_SCALE, Models
from app.policy import INTENSITY_ORDER, Policy
from schemas.types import Frame


@dataclass(frozen=True, slots=True)
class Tables:
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
    w_offer: tuple[float, float, float, float, float]  # OFFER_FEATURES' weights
    w_frame: dict[str, float]  # frame -> its weight (`fr:<frame>`)

    def offer_model(self, play: str, relation: str) -> float:
        value = self.offer_models.get((play, relation))
        if value is None:
            value = self.offer_models[(play, relation)] = self.w.get(
                f"play:{play}", 0.0
            ) + self.w.get(f"rel:{relation}", 0.0)
        return value


class TermsBuilder:
    """The policy's constant parts of the logit, and the Tables and Terms built on them."""

    def __init__(self, policy: Policy, models: Models, budget: UnsubscribeBudget) -> None:
        self.policy = policy
        self.models = models
        self.budget = budget
        self._weights_at = -1
        self._budget_at = -1
        self._built = 0  # Tables built so far: the Terms cached on older ones are stale
        self.accept: Tables
        prior = policy.priors.accept
        self._posture_prior = prior.readiness.get("posture", 0.0)
        self._channel_consts = {
            c: (
                f"ch:{c}",
                prior.channel.get(c, 0.0),
                spec.cost,
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
        # every frame there is, not only this policy's: a logged decision followed by
        # app/evaluate/follow.py may name another policy's frame, and learns `fr:<frame>`
        self._frames = get_args(Frame)
        self.play_prior = {
            play: prior.base + prior.play.get(play, 0.0) for play in ("assist", "expand", "commit")
        }
        self._readiness_prior = tuple(
            (k, v) for k, v in prior.readiness.items() if k not in ("posture",)
        )
        fit_signals = ("confidence", "urgency", "price_sensitivity", "maturity", "risk", "ltv")
        self.frame_fit = {
            f: tuple((k, v) for k, v in fits.items() if k in fit_signals)
            for f, fits in prior.frame_fit.items()
        }
        self.relation_fit = {
            r: tuple((k, v) for k, v in fits.items() if k in fit_signals)
            for r, fits in prior.relation_fit.items()
        }

    def tables(self) -> Tables:
        """Everything that depends only on the acceptance model's weights and the price of
        unsubscribe risk, rebuilt when they change (once per learning mini-batch, and once per
        hour of event time: app/guardrail.py)."""
        model, budget = self.models.accept, self.budget
        if self._weights_at != model.updates or self._budget_at != budget.version:
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
            self._weights_at, self._budget_at = model.updates, budget.version
            self._built += 1
            costs = budget.costs
            self.accept = Tables(
                weights_at=self._built,
                intercept=model.intercept,
                w=w,
                w_prior=w_prior,
                w_post=w.get("r:post", 0.0),
                w_ltv=w.get("r:ltv", 0.0),
                w_signals=tuple((name, w.get(key, 0.0)) for name, key in SIGNAL_FEATURES),
                channel={
                    c: (key, w.get(key, 0.0), prior_c, cost, costs.get(c, 0.0), onsite)
                    for c, (key, prior_c, cost, onsite) in self._channel_consts.items()
                },
                by_intensity=by_intensity,
                intensity_bounds=bounds,
                offer_models={},
                w_offer=tuple(w.get(key, 0.0) for key in OFFER_FEATURES),
                w_frame={f: w.get(f"fr:{f}", 0.0) for f in self._frames},
            )
        return self.accept

    def terms(self, ctx: Context) -> Terms:
        """Everything about the moment that does not depend on the offer or frame (computed
        once per moment and weight version)."""
        tables = self.tables()
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
        customer_logit = tables.intercept + tables.w_ltv * (r.ltv_score - CENTRE)
        for name, weight in tables.w_signals:
            customer_logit += weight * (signals[name] - CENTRE)
        posture, w_post, posture_prior = r.posture, tables.w_post, self._posture_prior
        by_channel = {}
        for channel, (_, weight, base, cost, fatigue_base, onsite) in tables.channel.items():
            level = posture.get(channel, 0.5)
            by_channel[channel] = (
                base + posture_prior * (level - 0.5),
                weight + w_post * (level - CENTRE),
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
            p.discount_habit * (0.5 + r.price_sensitivity) * r.ltv * 90.0 / 365.0,
        )
        return ctx.terms

    @staticmethod
    def fit(terms: Terms, base: float, fits: tuple[tuple[str, float], ...]) -> float:
        """A frame's or relation's prior on this moment's readiness."""
        sig = terms.signals
        value = base
        for k, v in fits:
            value += v * sig[k]
        return value
