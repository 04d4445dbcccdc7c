"""Learning from outcomes: offers delivered to customers become training examples.

An order containing the offered SKU within the attribution window after an action is a
success for P(accept); the window closing without one is a failure. An accepted offer returned
within the return window is a positive for P(return); the window closing without a return is a
negative. Windows close on event time: when the customer's own next event is later, or when
the stream's watermark (the latest event time seen) passes them.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Mapping
from typing import Any

from app.context import RELATION_PLAY, Scored
from app.models import PRIOR, PRIOR_SCALE, Models, OnlineLogit
from app.policy import Policy
from app.readiness import DAY, HOUR, CustomerState, Readiness

_MAX_PENDING = 8
_MAX_ACCEPTED = 8

# A pending offer: [deadline, sku, prior, channel, relation, frame, intensity,
#                   conf, urg, price, mat, risk, post, ltv, kind, return_prior]
_SIGNAL_KEYS = ("r:conf", "r:urg", "r:price", "r:mat", "r:risk", "r:post", "r:ltv")


def pending_entry(deadline: float, scored: Scored, r: Readiness, return_prior: float) -> list[Any]:
    o = scored.offer
    return [
        deadline,
        o.product.sku,
        scored.prior,
        scored.channel,
        o.relation,
        scored.frame,
        scored.intensity,
        r.confidence,
        r.urgency,
        r.price_sensitivity,
        r.maturity,
        r.risk,
        r.signal("posture", scored.channel),
        r.ltv_score,
        o.product.kind,
        return_prior,
    ]


def accept_x(entry: list[Any]) -> dict[str, float]:
    x = {
        PRIOR: entry[2] / PRIOR_SCALE,
        f"ch:{entry[3]}": 1.0,
        f"play:{RELATION_PLAY[entry[4]]}": 1.0,
        f"rel:{entry[4]}": 1.0,
        f"fr:{entry[5]}": 1.0,
        f"int:{entry[6]}": 1.0,
    }
    x.update(zip(_SIGNAL_KEYS, entry[7:14], strict=True))
    return x


def return_x(entry: list[Any]) -> dict[str, float]:
    return {PRIOR: entry[15] / PRIOR_SCALE, f"kind:{entry[14]}": 1.0, "r:risk": entry[11]}


class OutcomeLearner:
    """Keeps the event-time schedule of open windows and feeds closed ones to the models."""

    def __init__(self, policy: Policy, models: Models) -> None:
        self.models = models
        self.enabled = policy.learning.enabled
        self.window_s = policy.attribution.window_hours * HOUR
        self.return_window_s = policy.attribution.return_window_days * DAY
        self._schedule: list[tuple[float, str]] = []  # (window end, customer)

    @property
    def watermark(self) -> float:
        return self.models.watermark

    def reopen(self, customer_id: str, state: CustomerState) -> None:
        """Put a reloaded customer's open windows back on the schedule."""
        for entry in state.pending:
            heapq.heappush(self._schedule, (entry[0], customer_id))
        for entry in state.accepted:
            heapq.heappush(self._schedule, (entry[0], customer_id))

    def offered(
        self,
        customer_id: str,
        state: CustomerState,
        scored: Scored,
        r: Readiness,
        delivered_at: float,
        return_prior: float,
    ) -> None:
        """A delivered upsell opens an attribution window."""
        if not self.enabled:
            return
        deadline = delivered_at + self.window_s
        if len(state.pending) >= _MAX_PENDING:
            state.pending.pop(0)
        state.pending.append(pending_entry(deadline, scored, r, return_prior))
        heapq.heappush(self._schedule, (deadline, customer_id))

    def ordered(self, customer_id: str, state: CustomerState, skus: set[str], t: float) -> None:
        """An order: offers of these SKUs whose window is open are successes."""
        kept = []
        for entry in state.pending:
            if entry[1] in skus and entry[0] >= t:
                self.models.accept.learn_one(accept_x(entry), True)
                if len(state.accepted) >= _MAX_ACCEPTED:
                    state.accepted.pop(0)
                until = t + self.return_window_s
                state.accepted.append([until, *entry[1:]])
                heapq.heappush(self._schedule, (until, customer_id))
            else:
                kept.append(entry)
        state.pending = kept

    def returned(self, state: CustomerState, skus: set[str], t: float) -> None:
        """A return: accepted offers of these SKUs within the return window were losses."""
        kept = []
        for entry in state.accepted:
            if entry[1] in skus and entry[0] >= t:
                self.models.returns.learn_one(return_x(entry), True)
            else:
                kept.append(entry)
        state.accepted = kept

    def close_windows(self, state: CustomerState, t: float) -> None:
        """Every window of this customer that ended before `t` is a failure (no order) or a
        kept purchase (no return)."""
        if state.pending:
            state.pending = self._close(state.pending, t, self.models.accept, accept_x)
        if state.accepted:
            state.accepted = self._close(state.accepted, t, self.models.returns, return_x)

    @staticmethod
    def _close(
        entries: list[list[Any]],
        t: float,
        model: OnlineLogit,
        features: Callable[[list[Any]], dict[str, float]],
    ) -> list[list[Any]]:
        """Learn a negative from each entry whose window ended before `t`; keep the rest."""
        if all(entry[0] >= t for entry in entries):
            return entries
        kept = []
        for entry in entries:
            if entry[0] < t:
                model.learn_one(features(entry), False)
            else:
                kept.append(entry)
        return kept

    def advance(self, t: float, customers: Mapping[str, CustomerState]) -> None:
        """Move the watermark to `t` and close the windows that ended before it."""
        if t <= self.models.watermark:
            return
        self.models.watermark = t
        schedule = self._schedule
        while schedule and schedule[0][0] < t:
            _, customer_id = heapq.heappop(schedule)
            state = customers.get(customer_id)
            if state is not None:  # customers not in memory close on their next event
                self.close_windows(state, t)
