"""What the report is made of: per customer, the experiment arms their Actions recorded, and
what they bought, returned and cost over the period, from the actions, outcomes and events.

Only customers tact decided for (at least one Action) are counted: their arms are on their
Actions. Profit per customer is the store's: the margin of their orders in the period, less
returns (margin given back plus handling), the channel cost of the Actions delivered to them
and the subscriber value lost to unsubscribes. Margins use the catalog's unit costs when a
catalog is given, else `margin_rate` of the price.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from app import codec
from app.catalog import Catalog
from app.decode import decode_event
from app.errors import BadInput
from schemas import Envelope, MessageFeedback, OrderPlaced, OrderReturned, Refund
from schemas.types import event_seconds

_SUBSCRIBE_EVENTS = ("subscription_started",)


@dataclass(slots=True)
class CustomerFacts:
    customer_id: str
    arms: dict[str, str]
    first_decision: float
    plays: set[str] = field(default_factory=set)
    channels: set[str] = field(default_factory=set)
    frames: set[str] = field(default_factory=set)
    segments: set[str] = field(default_factory=set)
    orders: list[float] = field(default_factory=list)  # times of orders in the period
    margin: float = 0.0
    pre_margin: float = 0.0  # before the period: the CUPED covariate
    items: int = 0
    returned_items: int = 0
    return_loss: float = 0.0
    channel_cost: float = 0.0
    unsubscribe_cost: float = 0.0
    attributed_profit: float = 0.0  # what delivered Actions' outcomes claim
    subscribed: bool = False
    unsubscribed: bool = False

    @property
    def profit(self) -> float:
        return self.margin - self.return_loss - self.channel_cost - self.unsubscribe_cost

    def arm(self, experiment: str) -> str | None:
        return self.arms.get(experiment)


@dataclass(slots=True)
class ReportData:
    customers: dict[str, CustomerFacts]
    outcomes: list[dict[str, Any]]
    start: float  # the period
    end: float
    skipped: Counter[str] = field(default_factory=Counter)  # unreadable lines, by file
    counts: Counter[str] = field(default_factory=Counter)  # lines read, by file

    def with_arm(self, experiment: str, arm: str) -> list[CustomerFacts]:
        return [c for c in self.customers.values() if c.arm(experiment) == arm]


def _json_lines(lines: Iterable[bytes], name: str, data_skipped: Counter[str]) -> Iterable[Any]:
    for line in lines:
        if not line.strip():
            continue
        try:
            yield codec.loads(line)
        except codec.JSONDecodeError:
            data_skipped[name] += 1


def load(
    actions: Iterable[bytes],
    outcomes: Iterable[bytes],
    events: Iterable[bytes],
    catalog: Catalog | None,
    margin_rate: float,
    handling_cost: float,
    since: float | None = None,
    until: float | None = None,
) -> ReportData:
    """Read the three streams (JSON lines) into per-customer facts for the period
    [since, until] (default: from each customer's first decision to the last event)."""
    skipped: Counter[str] = Counter()
    counts: Counter[str] = Counter()
    customers: dict[str, CustomerFacts] = {}
    stale: set[str] = set()  # Actions a lagging worker sent already expired (reason `stale`)
    for action in _json_lines(actions, "actions", skipped):
        counts["actions"] += 1
        try:
            _add_action(customers, action)
        except (KeyError, TypeError, ValueError):
            skipped["actions"] += 1
            continue
        if "stale" in (action.get("reasons") or ()):
            stale.add(str(action.get("action_id")))
    kept_outcomes = []
    for outcome in _json_lines(outcomes, "outcomes", skipped):
        counts["outcomes"] += 1
        facts = customers.get(str(outcome.get("customer_id")))
        if facts is None or not isinstance(outcome.get("channel_cost"), int | float):
            skipped["outcomes"] += 1
            continue
        if outcome.get("delivered") and str(outcome.get("action_id")) in stale:
            # Sent already expired, so never delivered, whatever the engine recorded (with no
            # connector to report it expired, nothing told it so): no cost, no claim.
            outcome = {**outcome, "delivered": False, "channel_cost": 0.0}
            counts["stale"] += 1
        facts.channel_cost += float(outcome["channel_cost"])
        facts.unsubscribe_cost += float(outcome.get("unsubscribe_cost") or 0.0)
        if outcome.get("delivered"):
            facts.attributed_profit += float(outcome.get("margin") or 0.0) - float(
                outcome.get("return_loss") or 0.0
            )
        kept_outcomes.append(outcome)
    start = (
        since
        if since is not None
        else min((c.first_decision for c in customers.values()), default=0.0)
    )
    end = _fold_events(
        customers, events, catalog, margin_rate, handling_cost, since, until, skipped, counts
    )
    return ReportData(customers, kept_outcomes, start, end, skipped, counts)


def _add_action(customers: dict[str, CustomerFacts], action: dict[str, Any]) -> None:
    cid = action["customer_id"]
    t = event_seconds(action["ts"])
    facts = customers.get(cid)
    if facts is None:
        facts = customers[cid] = CustomerFacts(cid, dict(action.get("experiments") or {}), t)
        if "holdout" not in facts.arms:  # Actions from before experiments were recorded
            facts.arms["holdout"] = "held_out" if action.get("holdout") else "treated"
    facts.first_decision = min(facts.first_decision, t)
    play = action["play"]
    facts.plays.add(play)
    if play != "protect":
        facts.channels.add(action["channel"])
        if action.get("frame"):
            facts.frames.add(action["frame"])
    for reason in action.get("reasons") or ():
        if reason.startswith("seg:") and reason.count(":") == 1:
            facts.segments.add(reason[4:])
        elif reason.startswith("seg:risk:") or reason.startswith("seg:ltv:"):
            facts.segments.add(reason[4:].replace(":", "_"))


def _fold_events(
    customers: dict[str, CustomerFacts],
    events: Iterable[bytes],
    catalog: Catalog | None,
    margin_rate: float,
    handling_cost: float,
    since: float | None,
    until: float | None,
    skipped: Counter[str],
    counts: Counter[str],
) -> float:
    prices: dict[tuple[str, str], float] = {}  # (order, sku) -> unit price
    returned_orders: set[str] = set()
    end = 0.0
    for line in events:
        if not line.strip():
            continue
        counts["events"] += 1
        try:
            event = decode_event(line.rstrip(b"\r\n"))
        except BadInput:
            skipped["events"] += 1
            continue
        t = event.ts.timestamp()
        end = max(end, t)
        facts = customers.get(event.customer_id)
        if facts is None or (until is not None and t > until):
            continue
        start = since if since is not None else facts.first_decision
        _fold(
            facts,
            event,
            t,
            t >= start,
            catalog,
            margin_rate,
            handling_cost,
            prices,
            returned_orders,
        )
    return until if until is not None else end


def _fold(
    facts: CustomerFacts,
    event: Envelope,
    t: float,
    in_period: bool,
    catalog: Catalog | None,
    margin_rate: float,
    handling_cost: float,
    prices: dict[tuple[str, str], float],
    returned_orders: set[str],
) -> None:
    def unit_margin(sku: str, price: float) -> float:
        product = catalog.get(sku) if catalog is not None else None
        return price - product.unit_cost if product is not None else price * margin_rate

    if isinstance(event, OrderPlaced):
        share = event.total / sum(i.qty * i.price for i in event.items) if event.items else 1.0
        margin = 0.0
        for item in event.items:
            paid = item.price * min(share, 1.0)
            prices[(event.order_id, item.sku)] = paid
            margin += item.qty * unit_margin(item.sku, paid)
            product = catalog.get(item.sku) if catalog is not None else None
            if in_period and product is not None and product.kind == "subscription":
                facts.subscribed = True
        if not in_period:
            facts.pre_margin += margin
            return
        facts.orders.append(t)
        facts.margin += margin
        facts.items += sum(i.qty for i in event.items)
    elif not in_period:
        return
    elif isinstance(event, OrderReturned):
        returned_orders.add(event.order_id)
        for back in event.items:
            paid = prices.get((event.order_id, back.sku), back.price or 0.0)
            facts.returned_items += back.qty
            facts.return_loss += back.qty * (unit_margin(back.sku, paid) + handling_cost)
    elif isinstance(event, Refund):
        if event.order_id not in returned_orders:
            facts.return_loss += event.amount  # money back, goods kept
    elif isinstance(event, MessageFeedback):
        if event.kind in ("unsubscribe", "complaint"):
            facts.unsubscribed = True
    elif event.type in _SUBSCRIBE_EVENTS:
        facts.subscribed = True
