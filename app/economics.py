"""What an offer is worth: its value if taken up, and the chances it comes back or would have
been bought anyway. The arbiter (app/arbitration.py) combines these with P(accept) and costs.

    value        margin after unit cost, the frame's discount and expected returns; for a
                 subscription, its deliveries less the refills they replace
    P(return)    the returns model on the product kind and the customer's risk
    P(organic)   the chance the customer buys it in the attribution window without being
                 asked: the organic model, learned from holdout decisions
    anyway       the chance they buy it on their own later, within the policy's horizon
                 (app/anyway.py): a sale the offer only pulls forward is no gain

Together (with p = P(accept), o = P(organic), h = anyway, v the value under the frame and
v0 the plain value) the expected margin an offer adds over the horizon is

    p x (v - h x v0) - o x (1 - h) x v0

treated: p x v now, or (1 - p) x h x v0 later; untreated: o x v0 now, or (1 - o) x h x v0 later.
"""

from __future__ import annotations

from collections.abc import Callable
from math import exp, log
from typing import Final

from app.anyway import Anyway
from app.catalog import Product
from app.context import CENTRE, OFFER_FEATURES, SIGNAL_FEATURES, Context, Offer
from app.models import PRIOR, PRIOR_SCALE, Models, OnlineLogit
from app.policy import Policy
from app.readiness import Readiness

_MAX_ORGANIC: Final = 0.6
_VISIT_S: Final = 2 * 3600.0  # assists this recent were in the same visit
# Relations whose items customers buy on their own after the base, and the counts they use.
_FOLLOWS: Final = {
    "accessories": "accessories",
    "bundle_with": "bundle_with",
    "warranty": "warranty",
    "affinity": "accessories",
}


def _logit(p: float) -> float:
    p = min(max(p, 1e-6), 1.0 - 1e-6)
    return log(p / (1.0 - p))


class _Weights:
    """A model's weights, copied once per update (scoring reads them thousands of times)."""

    def __init__(self, model: OnlineLogit) -> None:
        self.model = model
        self.at = -1
        self.w: dict[str, float] = {}
        self.b = 0.0
        self.parts: dict[tuple[str, str], tuple[float, float, float, float]] = {}
        self.offer = (0.0,) * len(OFFER_FEATURES)  # OFFER_FEATURES' weights

    def get(self) -> tuple[dict[str, float], float]:
        if self.model.updates != self.at:
            self.w = dict(self.model.model._weights)
            self.b = self.model.intercept
            self.at = self.model.updates
            self.parts = {}
            self.offer = tuple(self.w.get(key, 0.0) for key in OFFER_FEATURES)
        return self.w, self.b

    def logit_parts(self, relation: str, kind: str) -> tuple[float, float, float, float]:
        """(intercept, prior scale, relation weight, kind weight) of the current weights."""
        w, b = self.get()
        key = (relation, kind)
        found = self.parts.get(key)
        if found is None:
            found = self.parts[key] = (
                b,
                w.get(PRIOR, PRIOR_SCALE) / PRIOR_SCALE,
                w.get(f"rel:{relation}", 0.0),
                w.get(f"kind:{kind}", 0.0),
            )
        return found


class Economics:
    def __init__(self, policy: Policy, models: Models, anyway: Anyway) -> None:
        self.policy = policy
        self.anyway = anyway
        self.cart_completion = 0.5  # P(a cart becomes an order), for assists in the cart
        self.enabled = policy.priors.anyway.enabled
        self.assist_factor: Callable[[str], float] = lambda moment: 1.0  # set by the arbiter
        self._returns = _Weights(models.returns)
        self._organic = _Weights(models.organic)
        self._prior_by_views: dict[int, float] = {}

    def return_prior(self, product: Product, r: Readiness) -> float:
        prior = self.policy.priors.return_
        return prior.base + prior.kind.get(product.kind, 0.0) + prior.risk * r.risk

    def p_return(self, product: Product, r: Readiness) -> float:
        """P(return) of `product` for this customer: the returns model on return_features."""
        w, b = self._returns.get()
        logit = (
            b
            + w.get(PRIOR, PRIOR_SCALE) / PRIOR_SCALE * self.return_prior(product, r)
            + w.get(f"kind:{product.kind}", 0.0)
            + w.get("r:risk", 0.0) * r.risk
        )
        return 1.0 / (1.0 + exp(-logit))

    def organic_prior(self, ctx: Context, offer: Offer) -> float:
        """The policy's prior logit of buying the offered item anyway."""
        organic = self.policy.priors.organic
        if offer.relation == "refill":
            p = organic.refill_at_maturity * min(ctx.readiness.maturity, 1.0)
            return _logit(p)
        views = ctx.state.viewed.get(offer.product.sku, 0)
        found = self._prior_by_views.get(views)
        if found is None:
            p = min(organic.base + organic.per_view * views, _MAX_ORGANIC)
            found = self._prior_by_views[views] = _logit(p)
        return found

    def p_organic(self, ctx: Context, offer: Offer) -> float:
        """P(buying the offered item without the offer), 0 for assist (the item itself): the
        organic model on the features P(accept) shares with it (app/learning.py organic_x)."""
        if offer.relation == "self":
            return 0.0
        b, scale, relation, kind = self._organic.logit_parts(offer.relation, offer.product.kind)
        logit = b + scale * self.organic_prior(ctx, offer) + relation + kind
        logit += self._organic_customer(ctx)
        w_price, w_level, w_seen, w_base, _ = self._organic.offer  # (it never sees `passed`)
        if offer.price_step:
            logit += w_price * offer.price_step
        if offer.price_level:
            logit += w_level * offer.price_level
        if offer.seen:
            logit += w_seen
        if offer.with_base:
            logit += w_base
        return 1.0 / (1.0 + exp(-logit))

    def _organic_customer(self, ctx: Context) -> float:
        """The customer's part of the organic logit (once per moment and weight version)."""
        w, _ = self._organic.get()
        at, cached = ctx.organic
        if at == self._organic.at:
            return cached
        r = ctx.readiness
        value = w.get("r:ltv", 0.0) * (r.ltv_score - CENTRE)
        for name, feature in SIGNAL_FEATURES:
            weight = w.get(feature)
            if weight:
                value += weight * (getattr(r, name) - CENTRE)
        ctx.organic = (self._organic.at, value)
        return value

    def anyway_share(self, ctx: Context, offer: Offer) -> float:
        """The chance the customer buys the offered item on their own within the horizon
        (0 for assist, upgrades and subscriptions, whose value accounts for it)."""
        relation = offer.relation
        follows = _FOLLOWS.get(relation)
        if follows is None or not self.enabled:
            if relation == "refill" and self.enabled:
                return self.anyway.refill(ctx.state, offer.product.sku, ctx.t)
            return 0.0
        base = offer.base
        if base is None:
            return 0.0
        state, sku = ctx.state, offer.product.sku
        follow = self.anyway.follow_on(follows, offer.seen, ctx.t)
        if ctx.moment == "post_purchase" or self.anyway.watched(state, sku, ctx.t):
            owned = 1.0  # the base was just bought
        elif base.sku in state.cart:
            owned = 0.7
        else:
            owned = self.anyway.base_bought(state.viewed.get(base.sku, 0))
        return owned * follow

    def assist_value(self, ctx: Context, offer: Offer, frame: str, p_return: float) -> float:
        """What an engaged assist is worth: a lift of the purchase under way (its margin at
        stake, `ctx.at_stake`), scaled by what held-back assists taught (app/distraction.py),
        and only the first assist of a visit lifts it; with fit guidance (risk_reduction), a
        return less of the item when it is bought."""
        p, state, product = self.policy, ctx.state, offer.product
        recent = ctx.t - state.assisted <= _VISIT_S
        lift = p.assist_lift * ctx.at_stake * self.assist_factor(ctx.moment)
        value = lift * (0.25 if recent else 1.0)
        if frame == "risk_reduction":
            if ctx.moment == "post_purchase":
                buy = 1.0  # bought: guidance can only prevent a return
            elif product.sku in state.cart:
                buy = self.cart_completion
            else:
                buy = self.anyway.base_bought(state.viewed.get(product.sku, 0))
            handling = p.return_handling_cost
            value += buy * p.assist_return_cut * p_return * (product.margin + handling)
        return value

    def replaced_refills(self, ctx: Context, offer: Offer) -> float:
        """Refills of its consumable a subscription would replace over its cycles."""
        if offer.relation != "subscription" or offer.base is None or not self.enabled:
            return 0.0
        p = self.anyway.refill(ctx.state, offer.base.sku, ctx.t)
        cycles = int(self.policy.subscription_cycles)
        return sum(p**n for n in range(1, cycles + 1))

    def value(self, offer: Offer, frame: str, p_return: float, replaced: float = 0.0) -> float:
        """Profit if the offer (not an assist: `assist_value`) is taken up under `frame`,
        after returns (for a subscription, its expected deliveries less the `replaced` refills'
        margin)."""
        p, product = self.policy, offer.product
        handling = p_return * p.return_handling_cost
        discount = p.cost_efficiency_discount if frame == "cost_efficiency" else 0.0
        unit = product.price * (1.0 - discount) - product.unit_cost
        if offer.relation == "subscription":
            keep = p.priors.anyway.subscription_keep
            deliveries = sum(keep**n for n in range(int(p.subscription_cycles)))
            base_margin = offer.base.margin if offer.base is not None else 0.0
            return deliveries * (unit * (1.0 - p_return) - handling) - replaced * base_margin
        if offer.relation == "upgrade" and offer.base is not None:
            unit -= offer.base.margin
        return unit * (1.0 - p_return) - handling
