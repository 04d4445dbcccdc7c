"""The closed loop: customers' events -> a policy's actions -> their responses -> more events.

Everything happens in event time, from one heap of timed items: organic sessions, the events
of each session, scheduled deliveries and the customers' responses. Actions are delivered the
way the connector contract says (README, "Actions"): holdout Actions never; onsite Actions at
once, to the customer on the site; the account portal at the next visit; messages and paid
retargeting at `not_before`, unless a later Action's suppression, an unsubscribe or
`expires_at` stopped them. The customer's response is drawn from the world's ground truth
with a uniform hashed from the seed and the action id.
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from hashlib import blake2b
from typing import Any, Protocol

from app.catalog import Catalog
from app.simulate.ledger import Ledger
from app.simulate.population import DAY_S, Customer, Session
from app.simulate.respond import ONSITE, respond
from app.simulate.world import WorldSpec
from schemas import Action

_SCALE = float(2**64)


class Policy(Protocol):
    """What the loop drives: the engine or a baseline."""

    name: str

    def process(self, event: dict[str, Any]) -> list[Action]: ...


_STAY_S = 1800.0  # a visit lasts this long after its last step (the order confirmation, say)


@dataclass(slots=True)
class _Visit:
    """The customer's current session and what actions did to it."""

    session: Session | None  # None: a quick visit to buy one thing
    ends: float = 0.0  # after this the customer is no longer on the site
    lift: float = 0.0
    abandoned: bool = False
    reassured: set[str] = field(default_factory=set)  # fit guidance on these SKUs


@dataclass(slots=True)
class _Shopper:
    customer: Customer
    visit: _Visit | None = None
    owned: set[str] = field(default_factory=set)
    subscribed: set[str] = field(default_factory=set)  # consumables now on subscription
    unsubscribed: set[str] = field(default_factory=set)
    portal: list[Action] = field(default_factory=list)  # waiting for the next visit
    pending: dict[str, Action] = field(default_factory=dict)  # scheduled, not delivered
    messages: list[float] = field(default_factory=list)  # delivery times
    counter: int = 0


class Simulation:
    def __init__(
        self,
        world: WorldSpec,
        catalog: Catalog,
        customers: list[Customer],
        policy: Policy,
        seed: int,
        on_event: Callable[[dict[str, Any]], None] | None = None,
        on_action: Callable[[Action], None] | None = None,
    ) -> None:
        self.world = world
        self.catalog = catalog
        self.policy = policy
        self.seed = seed
        self.on_event = on_event
        self.on_action = on_action
        self.shoppers = {c.id: _Shopper(c) for c in customers}
        self.ledger = Ledger(policy.name, customers=len(customers))
        self._heap: list[tuple[float, int, str, Any]] = []
        self._seq = 0
        self.end = datetime.fromisoformat(world.start).timestamp() + world.days * DAY_S
        self._subscription_of = {
            sub: p.sku
            for p in catalog.products.values()
            for sub in catalog.related(p.sku, "subscription")
        }

    # -- the loop -----------------------------------------------------------------------------
    def run(self) -> Ledger:
        started = time.perf_counter()
        for shopper in self.shoppers.values():
            for session in shopper.customer.sessions:
                self._push(session.t, "session", (shopper, session))
        handlers: dict[str, Callable[[float, Any], None]] = {
            "session": self._session,
            "event": self._event,
            "order": self._order_intent,
            "deliver": self._scheduled,
            "later": self._later,
            "cycle": self._cycle,
        }
        while self._heap:
            t, _, kind, payload = heapq.heappop(self._heap)
            if t > self.end:
                break
            handlers[kind](t, payload)
        self.ledger.seconds = time.perf_counter() - started
        return self.ledger

    def _push(self, t: float, kind: str, payload: Any) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (t, self._seq, kind, payload))

    def _u(self, *parts: object) -> float:
        key = "\x1f".join(str(p) for p in (self.seed, *parts))
        return int.from_bytes(blake2b(key.encode(), digest_size=8).digest(), "big") / _SCALE

    def _emit(self, shopper: _Shopper, t: float, event_type: str, **fields: Any) -> None:
        """Queue an event of this customer at `t` (ids are stable across policies for
        organic events: they name the session and step)."""
        c = shopper.customer
        shopper.counter += 1
        event_id = fields.pop("event_id", None) or f"{c.id}-x{shopper.counter}"
        event = {
            "event_id": event_id,
            "type": event_type,
            "customer_id": c.id,
            "ts": datetime.fromtimestamp(t, c.tz).isoformat(timespec="milliseconds"),
            **fields,
        }
        self._push(t, "event", (shopper, event))

    def _event(self, t: float, payload: tuple[_Shopper, dict[str, Any]]) -> None:
        shopper, event = payload
        self.ledger.events += 1
        if self.on_event is not None:
            self.on_event(event)
        for action in self.policy.process(event):
            self._handle(shopper, action, t)

    # -- organic behaviour --------------------------------------------------------------------
    def _session(self, t: float, payload: tuple[_Shopper, Session]) -> None:
        shopper, session = payload
        c = shopper.customer
        if session.refill is not None and session.refill in shopper.subscribed:
            return  # the subscription delivers it now
        visit = shopper.visit = _Visit(session)
        for action in shopper.portal:
            if action.expires_at.timestamp() >= t:
                self._deliver(shopper, action, t)
        shopper.portal = []
        step = [t]

        def at(gap: tuple[float, float] = (8.0, 45.0)) -> float:
            step[0] += gap[0] + (gap[1] - gap[0]) * self._u(c.id, session.index, step[0])
            return step[0]

        sid = f"{c.id}-s{session.index}"
        n = [0]

        def emit(event_type: str, **fields: Any) -> None:
            n[0] += 1
            self._emit(
                shopper, at(), event_type, event_id=f"{sid}-{n[0]}", session_id=sid, **fields
            )

        emit("page_view", page="home")
        for i, sku in enumerate(session.browse):
            emit("page_view", page="pdp", sku=sku)
            if session.reads_reviews[i]:
                emit("review_read", sku=sku, seconds=60.0 + 120.0 * self._u(sid, i, "read"))
        for page in session.policy_pages:
            emit("page_view", page=page)
        if not session.cart:
            visit.ends = step[0] + _STAY_S
            return
        if session.coupon:
            emit("coupon_interaction", action="view", code="SAVE10")
        for sku in session.cart:
            emit("add_to_cart", sku=sku, qty=1, price=self._price(sku))
        emit("page_view", page="cart")
        emit("checkout_start", cart_value=round(sum(self._price(s) for s in session.cart), 2))
        self._push(at((20.0, 90.0)), "order", (shopper, session, sid))
        visit.ends = step[0] + _STAY_S

    def _order_intent(self, t: float, payload: tuple[_Shopper, Session, str]) -> None:
        """The session's order goes through, or the cart is abandoned."""
        shopper, session, sid = payload
        visit = shopper.visit
        if visit is None or visit.session is not session:
            return
        chance = 0.95 if session.refill else shopper.customer.buy_rate
        chance = min(chance * (1.0 + visit.lift), 0.99)
        if visit.abandoned or session.u_order >= chance:
            return
        lines = [(sku, self._price(sku)) for sku in session.cart]
        discount = 0.1 if session.coupon else 0.0
        self._order(shopper, t, lines, discount, f"{sid}-order", session.u_returns, visit)
        later = self._later_accessory(session.cart)
        if later is not None and session.u_later < self.world.organic_accessory:
            self._push(t + session.later_days * DAY_S, "later", (shopper, later, sid))

    def _later(self, t: float, payload: tuple[_Shopper, str, str]) -> None:
        """An accessory the customer buys on their own, unless an offer sold it already."""
        shopper, sku, sid = payload
        if sku in shopper.owned:
            return
        shopper.visit = _Visit(None, ends=t + 60.0 + _STAY_S)
        self._emit(shopper, t, "page_view", page="pdp", sku=sku, event_id=f"{sid}-later-view")
        self._order(shopper, t + 60.0, [(sku, self._price(sku))], 0.0, f"{sid}-later", [], None)

    def _order(
        self,
        shopper: _Shopper,
        t: float,
        lines: list[tuple[str, float]],
        discount: float,
        order_id: str,
        u_returns: list[float],
        visit: _Visit | None,
        regret: float = 1.0,
    ) -> None:
        items = [{"sku": sku, "qty": 1, "price": round(price, 2)} for sku, price in lines]
        total = round(sum(round(price, 2) for _, price in lines) * (1.0 - discount), 2)
        fields: dict[str, Any] = {"order_id": order_id, "items": items, "total": total}
        if discount:
            fields.update(coupon_code="SAVE10", discount_total=round(total * discount, 2))
        self._emit(shopper, t, "order_placed", event_id=order_id, **fields)
        margin = sum(price * (1.0 - discount) - self._cost(sku) for sku, price in lines)
        self.ledger.order(total, margin, len(items))
        shopper.owned.update(sku for sku, _ in lines)
        for i, (sku, price) in enumerate(lines):
            u = u_returns[i] if i < len(u_returns) else self._u(order_id, sku, "return")
            if u < self._return_chance(shopper, sku, visit) * regret:
                back = t + (3.0 + 7.0 * self._u(order_id, sku, "when")) * DAY_S
                self._returned(shopper, back, order_id, sku, price * (1.0 - discount))

    def _returned(self, shopper: _Shopper, t: float, order_id: str, sku: str, paid: float) -> None:
        if t > self.end:
            return
        self._emit(shopper, t, "order_returned", order_id=order_id, items=[{"sku": sku, "qty": 1}])
        self._emit(shopper, t + 3600.0, "refund", order_id=order_id, amount=round(paid, 2))
        self.ledger.returned_items += 1
        self.ledger.return_loss += paid - self._cost(sku) + self.world.handling_cost

    def _return_chance(self, shopper: _Shopper, sku: str, visit: _Visit | None) -> float:
        product = self.catalog.get(sku)
        kind = product.kind if product is not None else "core"
        chance = shopper.customer.return_propensity * self.world.returns.get(kind, 1.0)
        if visit is not None and sku in visit.reassured:
            chance *= 1.0 - self.world.assist_return_cut
        return min(chance, 0.95)

    # -- actions ------------------------------------------------------------------------------
    def _handle(self, shopper: _Shopper, action: Action, t: float) -> None:
        self.ledger.actions[action.play] += 1
        if self.on_action is not None:
            self.on_action(action)
        for quiet in action.suppress:  # a suppression cancels what it covers (the contract)
            for aid, waiting in list(shopper.pending.items()):
                if waiting.channel == quiet.channel and waiting.not_before < quiet.until:
                    del shopper.pending[aid]
        if action.holdout or action.play == "protect":
            return
        if action.channel in ONSITE:
            if self.on_site(shopper, t):  # else nobody is there to see it
                self._deliver(shopper, action, t)
        elif action.channel == "account_portal":
            shopper.portal.append(action)
        else:
            shopper.pending[action.action_id] = action
            self._push(max(action.not_before.timestamp(), t), "deliver", (shopper, action))

    @staticmethod
    def on_site(shopper: _Shopper, t: float) -> bool:
        return shopper.visit is not None and t <= shopper.visit.ends

    def _scheduled(self, t: float, payload: tuple[_Shopper, Action]) -> None:
        shopper, action = payload
        if shopper.pending.pop(action.action_id, None) is None:
            return  # cancelled by a suppression
        if action.expires_at.timestamp() < t or action.channel in shopper.unsubscribed:
            return
        self._deliver(shopper, action, t)

    def _deliver(self, shopper: _Shopper, action: Action, t: float) -> None:
        channel = action.channel
        truth = self.world.channels[channel]
        self.ledger.channel_cost += truth.cost
        self.ledger.delivered[channel] += 1
        respond(self, shopper, action, t)

    def _cycle(self, t: float, payload: tuple[_Shopper, str, str, int]) -> None:
        """One delivery of a subscription, while the subscriber keeps it."""
        shopper, sku, action_id, n = payload
        if self._u(action_id, "keep", n) >= self.world.subscription_keep:
            return
        self._order(shopper, t, [(sku, self._price(sku))], 0.0, f"{action_id[:16]}-c{n}", [], None)
        product = self.catalog.get(sku)
        if product is not None and product.refill_days:
            self._push(t + product.refill_days * DAY_S, "cycle", (shopper, sku, action_id, n + 1))

    # -- catalog ------------------------------------------------------------------------------
    def _price(self, sku: str) -> float:
        product = self.catalog.get(sku)
        return product.price if product is not None else 0.0

    def _cost(self, sku: str) -> float:
        product = self.catalog.get(sku)
        return product.unit_cost if product is not None else 0.0

    def _later_accessory(self, cart: list[str]) -> str | None:
        for sku in cart:
            accessories = self.catalog.related(sku, "accessories")
            if accessories:
                return accessories[0]
        return None
