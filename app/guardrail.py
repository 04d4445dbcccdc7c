"""The unsubscribe guardrail: a budget on the unsubscribes tact's messages cause.

Each message risks an unsubscribe, and the engine prices that risk: the channel's unsubscribe
rate (learned: unsubscribes that name one of tact's actions over messages decided, from the
policy's `unsubscribe_risk` worth `_PRIOR_MESSAGES` messages) x its `subscriber_value` x the
intensity's fatigue factor. A message can pay for itself and still cost the store more of its
list than a marketer accepts, so the policy sets a budget, `guardrails.unsubscribes_per_1000`:
unsubscribes per 1,000 customers per 30 days. The budget accrues with the customers seen and
event time; while the unsubscribes counted run ahead of it, the price of unsubscribe risk is
multiplied by

    price = exp(gain x (unsubscribes - allowed) / (allowed + 1)),   between 1 and _MAX_PRICE

so only the messages worth most for their risk still go out, until the count is back on pace
(then the price is 1 again: the budget never makes tact send more). A Lagrange multiplier on
the constraint, set from what was counted rather than solved for. Event time only; the counts
are part of the models' checkpoint. With learning off, nothing is counted: the policy's rates at
price 1.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any, Final

from app.policy import Policy
from app.readiness import DAY

_PRIOR_MESSAGES: Final = 500.0  # the policy's unsubscribe_risk weighs as much as this many messages
_MAX_PRICE: Final = 1000.0
_STEP_S: Final = 3600.0  # the price is recomputed at most once per hour of event time (and at once
# after an unsubscribe), so the weights that depend on it are rebuilt rarely


class UnsubscribeCounts:
    """What the guardrail counts, and the price it last set (part of the models' checkpoint,
    so a restarted worker prices as one that never stopped)."""

    def __init__(self) -> None:
        self.customers = 0  # distinct customers seen (a state created)
        self.first_t = 0.0
        self.sent: dict[str, float] = {}  # messages decided, per channel
        self.unsubscribed: dict[str, float] = {}  # unsubscribes naming one of our actions
        self.priced_at: float | None = None  # event time of the last pricing
        self.price = 1.0
        self.costs: dict[str, float] | None = None  # per channel, as last priced

    def state(self) -> dict[str, Any]:
        return {
            "customers": self.customers,
            "first_t": self.first_t,
            "sent": dict(self.sent),
            "unsubscribed": dict(self.unsubscribed),
            "priced_at": self.priced_at,
            "price": self.price,
            "costs": None if self.costs is None else dict(self.costs),
        }

    def restore(self, state: Mapping[str, Any]) -> None:
        self.customers = int(state.get("customers", 0))
        self.first_t = float(state.get("first_t", 0.0))
        self.sent = {k: float(v) for k, v in state.get("sent", {}).items()}
        self.unsubscribed = {k: float(v) for k, v in state.get("unsubscribed", {}).items()}
        self.priced_at = state.get("priced_at")
        self.price = float(state.get("price", 1.0))
        costs = state.get("costs")
        self.costs = None if costs is None else {k: float(v) for k, v in costs.items()}

    # -- changes (app/models.py Models.change) -------------------------------------------------
    def arrived(self, t: float) -> None:
        """A customer seen for the first time, at `t`."""
        if not self.customers:
            self.first_t = t
        self.customers += 1

    def message(self, channel: str) -> None:
        """A message decided on `channel`."""
        self.sent[channel] = self.sent.get(channel, 0.0) + 1.0

    def unsubscribe(self, channel: str) -> None:
        """An unsubscribe from `channel` that names one of tact's actions."""
        self.unsubscribed[channel] = self.unsubscribed.get(channel, 0.0) + 1.0


class UnsubscribeBudget:
    """The price of unsubscribe risk per channel, from the policy and the counts."""

    def __init__(
        self,
        policy: Policy,
        counts: UnsubscribeCounts,
        change: Callable[..., None] | None = None,
    ) -> None:
        """`change` makes a change of the counts (app/models.py Models.change; None: at
        once)."""
        spec = policy.guardrails
        per_1000 = spec.unsubscribes_per_1000
        self.per_customer_day = None if per_1000 is None else per_1000 / 1000.0 / 30.0
        self.gain = spec.gain
        self.counts = counts
        self.change = change or (lambda name, *args: getattr(counts, name)(*args))
        # Learning off: the policy's rates at price 1, nothing counted (the counts are global,
        # like the models, and would make one customer's decisions depend on others').
        self.enabled = policy.learning.enabled
        self.prior = {
            c: s.unsubscribe_risk for c, s in policy.channels.items() if s.subscriber_value > 0
        }
        self.value = {c: s.subscriber_value for c, s in policy.channels.items()}
        if not self.enabled:  # whatever a checkpoint says: the policy's rates at price 1
            counts.price = 1.0
            counts.costs = None
        if counts.costs is None or set(counts.costs) != set(self.prior):
            counts.costs = {c: self.rate(c) * self.value[c] * counts.price for c in self.prior}
        self.version = 0  # bumped whenever the costs are recomputed

    @property
    def price(self) -> float:
        """What unsubscribe risk costs now, as a multiple of its plain cost (1: on pace)."""
        return self.counts.price

    @property
    def costs(self) -> dict[str, float]:
        """Each message channel's cost of unsubscribe risk per message, before the
        intensity's fatigue factor."""
        costs = self.counts.costs
        assert costs is not None
        return costs

    # -- counting -----------------------------------------------------------------------------
    def arrived(self, t: float) -> None:
        """A customer seen for the first time."""
        if self.enabled:
            self.change("arrived", t)

    def message(self, channel: str) -> None:
        """A message decided on `channel` (counted whatever the guardrail)."""
        if self.enabled and channel in self.prior:
            self.change("message", channel)

    def unsubscribe(self, channel: str, t: float) -> None:
        """An unsubscribe (or complaint) that names one of tact's actions."""
        if self.enabled and channel in self.prior:
            self.change("unsubscribe", channel)
            self._reprice(t)

    def tick(self, t: float) -> None:
        """The costs for event time `t` (recomputed at most once per hour)."""
        last = self.counts.priced_at
        if self.enabled and (last is None or t - last >= _STEP_S):
            self._reprice(t)

    # -- reading ------------------------------------------------------------------------------
    def rate(self, channel: str) -> float:
        """P(unsubscribe) per message on `channel`: the prior, then what was counted."""
        counts = self.counts
        if not self.enabled:
            return self.prior.get(channel, 0.0)
        return (
            self.prior.get(channel, 0.0) * _PRIOR_MESSAGES + counts.unsubscribed.get(channel, 0.0)
        ) / (_PRIOR_MESSAGES + counts.sent.get(channel, 0.0))

    def allowed(self, t: float) -> float:
        """Unsubscribes the budget allows by `t` (infinite without a budget)."""
        if self.per_customer_day is None:
            return math.inf
        days = max(t - self.counts.first_t, DAY) / DAY
        return self.per_customer_day * self.counts.customers * days

    def _reprice(self, t: float) -> None:
        """The price of unsubscribe risk now, and each channel's cost per message (before the
        intensity's fatigue factor)."""
        counts = self.counts
        counts.priced_at = t
        allowed = self.allowed(t)
        price = 1.0
        if math.isfinite(allowed):
            counted = sum(counts.unsubscribed.values())
            excess = self.gain * (counted - allowed) / (allowed + 1.0)
            price = min(max(math.exp(min(excess, 50.0)), 1.0), _MAX_PRICE)
        counts.price = price
        counts.costs = {c: self.rate(c) * self.value[c] * price for c in self.prior}
        self.version += 1
