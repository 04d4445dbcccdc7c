"""What an offer is worth: its value if taken up, and the chances it comes back or would have
been bought anyway. The arbiter (app/arbitration.py) combines these with P(accept) and costs.

    value        margin after unit cost, the frame's discount and expected returns
    P(return)    the returns model on the product kind and the customer's risk
    P(organic)   the chance the customer buys it without being asked: the organic model,
                 learned from holdout decisions, starting at the policy's prior
"""

from __future__ import annotations

from math import exp, log

from app.catalog import Product
from app.context import Context, Offer
from app.models import PRIOR, PRIOR_SCALE, Models, OnlineLogit
from app.policy import Policy
from app.readiness import Readiness

_MAX_ORGANIC = 0.6


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

    def get(self) -> tuple[dict[str, float], float]:
        if self.model.updates != self.at:
            self.w = dict(self.model.model._weights)
            self.b = self.model.model.intercept
            self.at = self.model.updates
        return self.w, self.b


class Economics:
    def __init__(self, policy: Policy, models: Models) -> None:
        self.policy = policy
        self._returns = _Weights(models.returns)
        self._organic = _Weights(models.organic)

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
        else:
            views = ctx.state.viewed.get(offer.product.sku, 0)
            p = min(organic.base + organic.per_view * views, _MAX_ORGANIC)
        return _logit(p)

    def p_organic(self, ctx: Context, offer: Offer) -> float:
        """P(buying the offered item without the offer), 0 for assist (the item itself)."""
        if offer.relation == "self":
            return 0.0
        w, b = self._organic.get()
        logit = (
            b
            + w.get(PRIOR, PRIOR_SCALE) / PRIOR_SCALE * self.organic_prior(ctx, offer)
            + w.get(f"rel:{offer.relation}", 0.0)
            + w.get(f"kind:{offer.product.kind}", 0.0)
        )
        return 1.0 / (1.0 + exp(-logit))

    def value(self, offer: Offer, frame: str, p_return: float) -> float:
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
