"""The decision engine: events in, Actions out, per-customer state kept in between.

This is the walking skeleton's engine: one simple rule set, so that actions flow end to end.
Issue #3 replaces the rules with readiness, the policy matrix and profit arbitration; the
interface (`process`, `process_event`, state restore/dump) stays.

Rules:
- add_to_cart: expand on the cart surface (completeness frame, low intensity), at most
  ONSITE_DAILY_CAP times per customer per UTC day; an onsite upsell suppresses paid
  retargeting for a day.
- order_returned: protect: no offers, and every outbound channel quiet for two weeks.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping
from datetime import timedelta
from typing import Any

from app.actions import make_action
from app.decode import validate_object
from app.state import CustomerState
from schemas import Action, AddToCart, Envelope, OrderReturned

POLICY_VERSION = "skeleton-1"
MODEL_VERSION = "rules-0"
ONSITE_DAILY_CAP = 3

_QUIET_AFTER_RETURN = timedelta(days=14)


class DecisionEngine:
    """Keeps customer state and decides. Pure: no I/O, event time only."""

    def __init__(self) -> None:
        self.customers: dict[str, CustomerState] = {}

    # -- state ----------------------------------------------------------------------------
    def knows(self, customer_id: str) -> bool:
        return customer_id in self.customers

    def restore(self, blobs: Mapping[str, bytes]) -> None:
        """Load serialised customer states (from a store)."""
        for customer_id, blob in blobs.items():
            self.customers[customer_id] = CustomerState.from_bytes(blob)

    def dump(self, customer_ids: Iterable[str]) -> dict[str, bytes]:
        """Serialise the named customers' states (for a store)."""
        return {cid: self.customers[cid].to_bytes() for cid in customer_ids}

    def forget(self) -> None:
        """Drop every cached state (e.g. when partitions move to another worker)."""
        self.customers.clear()

    def trim(self, recent: Iterable[str], limit: int) -> int:
        """Keep at most `limit` states, dropping the least recently used; `recent` were just
        used. Only call when every state is saved elsewhere. Returns how many were dropped."""
        customers = self.customers
        for cid in recent:
            customers[cid] = customers.pop(cid)  # dicts keep insertion order: move to the end
        excess = len(customers) - limit
        if excess > 0:
            for cid in list(itertools.islice(customers, excess)):
                del customers[cid]
        return max(excess, 0)

    # -- decisions ------------------------------------------------------------------------
    def process(self, event: dict[str, Any]) -> list[Action]:
        """Validate a raw event dict and decide; raises BadInput for an invalid event."""
        return self.process_event(validate_object(event))

    def process_event(self, event: Envelope) -> list[Action]:
        state = self.customers.get(event.customer_id)
        if state is None:
            state = self.customers[event.customer_id] = CustomerState(first_seen=event.ts)
        state.observe(event)
        if isinstance(event, AddToCart):
            return self._cart_upsell(state, event)
        if isinstance(event, OrderReturned):
            return [
                _action(
                    event,
                    "protect",
                    "none",
                    ttl=_QUIET_AFTER_RETURN,
                    suppress=("email", "sms", "paid_retargeting"),
                    quiet_for=_QUIET_AFTER_RETURN,
                    reasons=("rule:recent_return",),
                )
            ]
        return []

    def _cart_upsell(self, state: CustomerState, event: AddToCart) -> list[Action]:
        if state.onsite_offers_on(event.ts.date()) >= ONSITE_DAILY_CAP:
            return []
        state.count_onsite_offer(event.ts.date())
        return [
            _action(
                event,
                "expand",
                "onsite_cart",
                ttl=timedelta(minutes=30),
                suppress=("paid_retargeting",),
                quiet_for=timedelta(days=1),
                reasons=("rule:cart_add",),
            )
        ]


def _action(
    event: Envelope,
    play: Any,
    channel: Any,
    *,
    ttl: timedelta,
    suppress: tuple[str, ...],
    quiet_for: timedelta,
    reasons: tuple[str, ...],
) -> Action:
    return make_action(
        customer_id=event.customer_id,
        event_id=event.event_id,
        ts=event.ts,
        play=play,
        channel=channel,
        ttl=ttl,
        policy_version=POLICY_VERSION,
        model_version=MODEL_VERSION,
        frame="completeness" if play == "expand" else None,
        suppress=tuple((c, quiet_for) for c in suppress),  # type: ignore[misc]
        reasons=reasons,
    )
