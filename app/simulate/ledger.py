"""What a simulated policy really earned: the world's own books, not the engine's estimates."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class Ledger:
    """Money and counts of one simulated run. `profit` is the store's: margin of every order,
    less what returns gave back (margin and handling), channel spend, and the cost of messages
    sent without consent. What unsubscribes and tiredness cost shows in the margin: the visits
    (and orders) that did not happen."""

    policy: str
    margin: float = 0.0
    revenue: float = 0.0
    return_loss: float = 0.0
    channel_cost: float = 0.0
    violation_cost: float = 0.0
    orders: int = 0
    items: int = 0
    returned_items: int = 0
    offers_accepted: int = 0
    unsubscribes: int = 0
    subscriptions: int = 0
    violations: int = 0  # messages to shoppers who never opted in
    visits_skipped: int = 0  # visits of their own a tired shopper skipped
    visits_lost: int = 0  # newsletter visits lost with an unsubscribe
    derailed: int = 0  # purchases under way an offer derailed
    refills_replaced: int = 0  # refills a subscription or an earlier offer made unneeded
    sure_things_pulled: int = 0  # add-ons sold that the shopper would have bought anyway
    accepted_by_type: Counter[str] = field(default_factory=Counter)
    events: int = 0
    actions: Counter[str] = field(default_factory=Counter)  # by play
    delivered: Counter[str] = field(default_factory=Counter)  # by channel
    customers: int = 0
    seconds: float = 0.0

    @property
    def profit(self) -> float:
        return self.margin - self.return_loss - self.channel_cost - self.violation_cost

    @property
    def return_rate(self) -> float:
        """Returned items per item bought."""
        return self.returned_items / self.items if self.items else 0.0

    def order(self, revenue: float, margin: float, items: int) -> None:
        self.orders += 1
        self.items += items
        self.revenue += revenue
        self.margin += margin

    def summary(self, baseline: Ledger | None) -> dict[str, Any]:
        incremental = self.profit - baseline.profit if baseline is not None else 0.0
        return {
            "policy": self.policy,
            "incremental_profit": round(incremental, 2),
            "incremental_profit_per_customer": round(incremental / max(self.customers, 1), 4),
            "profit": round(self.profit, 2),
            "margin": round(self.margin, 2),
            "revenue": round(self.revenue, 2),
            "return_loss": round(self.return_loss, 2),
            "channel_cost": round(self.channel_cost, 2),
            "violation_cost": round(self.violation_cost, 2),
            "orders": self.orders,
            "items": self.items,
            "return_rate": round(self.return_rate, 4),
            "offers_accepted": self.offers_accepted,
            "unsubscribes": self.unsubscribes,
            "subscriptions": self.subscriptions,
            "violations": self.violations,
            "visits_skipped": self.visits_skipped,
            "visits_lost": self.visits_lost,
            "derailed": self.derailed,
            "refills_replaced": self.refills_replaced,
            "sure_things_pulled": self.sure_things_pulled,
            "accepted_by_type": dict(self.accepted_by_type),
            "messages": sum(self.delivered[c] for c in ("email", "sms")),
            "paid_impressions": self.delivered["paid_retargeting"],
            "onsite_offers": sum(
                self.delivered[c] for c in ("onsite_pdp", "onsite_cart", "post_purchase")
            ),
            "actions": dict(self.actions),
            "events": self.events,
            "seconds": round(self.seconds, 1),
        }
