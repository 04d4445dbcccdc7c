"""The closed loop: shoppers' events -> a policy's actions -> their responses -> more events.

Everything happens in event time, from one heap of timed items: visits, the events of each
visit, scheduled deliveries and the shoppers' responses. Actions are delivered the way the
connector contract says (README, "Actions"): holdout Actions never; onsite Actions at once, to
a shopper on the site; the account portal at the next visit; messages and paid retargeting at
`not_before`, unless a later Action's suppression, an unsubscribe or `expires_at` stopped them.
The shopper's response is drawn from the world's chances (app/simulate/truth.py) with a
uniform hashed from the seed and the action id.

What shoppers do on their own: visits (skipped now and then when contacts have tired them;
the newsletter's visits end with an unsubscribe), orders (rarer for a shopper who learned to
wait for discounts), returns, refills of consumables (replaced by a subscription), and the
add-ons sure things buy after the item they go with.
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from app.catalog import RELATIONS, Catalog
from app.simulate import truth
from app.simulate.ledger import Ledger
from app.simulate.population import DAY_S, Customer, Session
from app.simulate.respond import respond
from app.simulate.truth import ONSITE, Stock, hashed
from app.simulate.world import WorldSpec
from schemas import Action


class Policy(Protocol):
    """What the loop drives: the engine or a baseline."""

    name: str

    def process(self, event: dict[str, Any]) -> list[Action]: ...


STAY_S = 1800.0  # a visit lasts this long after its last step (the order confirmation, say)
_DURABLE = frozenset({"core", "premium", "accessory", "warranty"})


@dataclass(slots=True)
class _Visit:
    """The shopper's current visit and what actions did to it."""

    session: Session | None  # None: a quick visit to buy one thing
    cart: list[str] = field(default_factory=list)  # what will be ordered
    ends: float = 0.0  # after this the shopper is no longer on the site
    lift: float = 0.0
    abandoned: bool = False
    ordered: bool = False
    reassured: set[str] = field(default_factory=set)  # fit guidance on these SKUs


@dataclass(slots=True)
class _Shopper:
    customer: Customer
    tire: Stock
    habit: Stock
    visit: _Visit | None = None
    owned: set[str] = field(default_factory=set)
    bought_at: dict[str, float] = field(default_factory=dict)  # consumable -> last bought
    subscribed: set[str] = field(default_factory=set)  # consumables now on subscription
    unsubscribed: set[str] = field(default_factory=set)
    portal: list[Action] = field(default_factory=list)  # waiting for the next visit
    pending: dict[str, Action] = field(default_factory=dict)  # scheduled, not delivered
    counter: int = 0
    met: bool = False  # the store has seen them (consents recorded)


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
        tire_s, habit_s = world.tire_half_life_days * DAY_S, world.habit_half_life_days * DAY_S
        self.shoppers = {c.id: _Shopper(c, Stock(tire_s), Stock(habit_s)) for c in customers}
        self.ledger = Ledger(policy.name, customers=len(customers))
        self._heap: list[tuple[float, int, str, Any]] = []
        self._seq = 0
        self.start = datetime.fromisoformat(world.start).timestamp()
        self.end = self.start + world.days * DAY_S
        self.bases: dict[tuple[str, str], set[str]] = {}  # (offered sku, relation) -> bases
        for p in catalog.products.values():
            for relation in RELATIONS:
                for sku in catalog.related(p.sku, relation):
                    self.bases.setdefault((sku, relation), set()).add(p.sku)
        self.subscription_of = {
            sub: base
            for (sub, r), bases in self.bases.items()
            if r == "subscription"
            for base in bases
        }
        bind = getattr(policy, "bind", None)
        if bind is not None:
            bind(self)  # the ceiling reads the world's truth

    # -- the loop -----------------------------------------------------------------------------
    def run(self) -> Ledger:
        started = time.perf_counter()
        for shopper in self.shoppers.values():
            for session in shopper.customer.sessions:
                self.push(session.t, "session", (shopper, session))
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

    def push(self, t: float, kind: str, payload: Any) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (t, self._seq, kind, payload))

    def u(self, *parts: object) -> float:
        return hashed(self.seed, *parts)

    def emit(self, shopper: _Shopper, t: float, event_type: str, **fields: Any) -> None:
        """Queue an event of this shopper at `t` (ids are stable across policies for organic
        events: they name the visit and step)."""
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
        self.push(t, "event", (shopper, event))

    def _event(self, t: float, payload: tuple[_Shopper, dict[str, Any]]) -> None:
        shopper, event = payload
        self.ledger.events += 1
        if self.on_event is not None:
            self.on_event(event)
        for action in self.policy.process(event):
            self._handle(shopper, action, t)

    # -- what the world knows -------------------------------------------------------------------
    def shift(self, t: float) -> float:
        return self.world.shift_at(t, self.start)

    @staticmethod
    def on_site(shopper: _Shopper, t: float) -> bool:
        return shopper.visit is not None and t <= shopper.visit.ends

    def has_base(self, shopper: _Shopper, sku: str, relation: str) -> bool:
        """The shopper owns, or has in the cart, an item that `sku` is `relation` of."""
        bases = self.bases.get((sku, relation), set())
        cart = shopper.visit.cart if shopper.visit is not None else []
        return any(b in shopper.owned or b in cart for b in bases)

    def type_of(self, shopper: _Shopper, sku: str, relation: str, t: float) -> str:
        """The shopper's type for `sku`: a refill is a sure thing while their own refills
        go on, else a persuadable or a lost cause."""
        c = shopper.customer
        if relation == "refill":
            planned = any(s.refill == sku and s.t > t and s.t < t + 45 * DAY_S for s in c.sessions)
            if planned and sku not in shopper.subscribed:
                return "sure"
            share = self.world.type_shares("refill").persuadable * c.receptivity
            return "persuadable" if hashed(c.seed, c.id, "type", sku, "refill") < share else "lost"
        return truth.item_type(self.world, c, sku, relation)

    # -- organic behaviour --------------------------------------------------------------------
    def _session(self, t: float, payload: tuple[_Shopper, Session]) -> None:
        shopper, session = payload
        c = shopper.customer
        if session.refill is not None:
            last = shopper.bought_at.get(session.refill, -1e18)
            product = self.catalog.get(session.refill)
            cycle = (product.refill_days or 30) * DAY_S if product is not None else 30 * DAY_S
            if session.refill in shopper.subscribed or t - last < 0.6 * cycle:
                self.ledger.refills_replaced += 1
                return  # the subscription, or an offer taken up, delivered it already
        else:
            if session.origin == "newsletter" and "email" in shopper.unsubscribed:
                self.ledger.visits_lost += 1
                return  # they no longer get the newsletter
            if session.u_skip < truth.skip_chance(self.world, c, shopper.tire.at(t)):
                self.ledger.visits_skipped += 1
                return
        cart = [s for s in session.cart if not (s in shopper.owned and self._durable(s))]
        visit = shopper.visit = _Visit(session, cart)
        for action in shopper.portal:
            if action.expires_at.timestamp() >= t:
                self._deliver(shopper, action, t)
        shopper.portal = []
        step = [t]

        def at(gap: tuple[float, float] = (8.0, 45.0)) -> float:
            step[0] += gap[0] + (gap[1] - gap[0]) * self.u(c.id, session.index, step[0])
            return step[0]

        sid = f"{c.id}-s{session.index}"
        n = [0]

        def emit(event_type: str, **fields: Any) -> None:
            n[0] += 1
            self.emit(shopper, at(), event_type, event_id=f"{sid}-{n[0]}", session_id=sid, **fields)

        if not shopper.met:
            shopper.met = True
            for channel in ("email", "sms"):
                emit("consent", channel=channel, granted=channel in c.consents, source="signup")
        emit("page_view", page="home")
        if session.price_sort:
            emit("search", sort="price_asc")
        for i, sku in enumerate(session.browse):
            emit("page_view", page="pdp", sku=sku)
            if session.reads_reviews[i]:
                emit("review_read", sku=sku, seconds=60.0 + 120.0 * self.u(sid, i, "read"))
        for page in session.policy_pages:
            emit("page_view", page=page)
        if not cart:
            visit.ends = step[0] + STAY_S
            return
        if session.coupon:
            emit("coupon_interaction", action="view", code="SAVE10")
        for sku in cart:
            emit("add_to_cart", sku=sku, qty=1, price=self.price(sku))
        emit("page_view", page="cart")
        emit("checkout_start", cart_value=round(sum(self.price(s) for s in cart), 2))
        self.push(at((20.0, 90.0)), "order", (shopper, session, sid))
        visit.ends = step[0] + STAY_S

    def _order_intent(self, t: float, payload: tuple[_Shopper, Session, str]) -> None:
        """The visit's order goes through, or the cart is abandoned."""
        shopper, session, sid = payload
        visit = shopper.visit
        if visit is None or visit.session is not session or not visit.cart:
            return
        if session.refill:
            chance = 0.95
        else:
            chance = shopper.customer.buy_rate
            if not session.coupon:
                chance *= truth.habit_factor(self.world, shopper.habit.at(t))
        chance = min(chance * (1.0 + visit.lift), 0.99)
        if visit.abandoned or session.u_order >= chance:
            return
        visit.ordered = True
        lines = [(sku, self.price(sku)) for sku in visit.cart]
        discount = 0.1 if session.coupon else 0.0
        self.order(shopper, t, lines, discount, f"{sid}-order", session.u_returns, visit)

    def _sure_things(self, shopper: _Shopper, t: float, sku: str) -> None:
        """Add-ons of `sku` that this shopper buys on their own later."""
        low, high = self.world.sure_days
        c = shopper.customer
        for relation in ("accessories", "bundle_with", "warranty"):
            for other in self.catalog.related(sku, relation):
                if other in shopper.owned or truth.item_type(self.world, c, other, relation) != (
                    "sure"
                ):
                    continue
                when = t + (low + (high - low) * hashed(c.seed, c.id, "later", other)) * DAY_S
                self.push(when, "later", (shopper, other))

    def _later(self, t: float, payload: tuple[_Shopper, str]) -> None:
        """An add-on a sure thing buys on their own, unless they own it already."""
        shopper, sku = payload
        if sku in shopper.owned:
            self.ledger.sure_things_pulled += 1
            return
        c = shopper.customer
        shopper.visit = _Visit(None, [sku], ends=t + 60.0 + STAY_S)
        self.emit(shopper, t, "page_view", page="pdp", sku=sku, event_id=f"{c.id}-later-{sku}")
        self.order(shopper, t + 60.0, [(sku, self.price(sku))], 0.0, f"{c.id}-later-{sku}", [])

    def order(
        self,
        shopper: _Shopper,
        t: float,
        lines: list[tuple[str, float]],
        discount: float,
        order_id: str,
        u_returns: list[float],
        visit: _Visit | None = None,
        regret: float = 1.0,
    ) -> None:
        items = [{"sku": sku, "qty": 1, "price": round(price, 2)} for sku, price in lines]
        total = round(sum(round(price, 2) for _, price in lines) * (1.0 - discount), 2)
        fields: dict[str, Any] = {"order_id": order_id, "items": items, "total": total}
        if discount:
            fields.update(coupon_code="SAVE10", discount_total=round(total * discount, 2))
        self.emit(shopper, t, "order_placed", event_id=order_id, **fields)
        margin = sum(price * (1.0 - discount) - self.cost(sku) for sku, price in lines)
        self.ledger.order(total, margin, len(items))
        for i, (sku, price) in enumerate(lines):
            shopper.owned.add(sku)
            shopper.bought_at[sku] = t
            if self._durable(sku):
                self._sure_things(shopper, t, sku)
            u = u_returns[i] if i < len(u_returns) else self.u(order_id, sku, "return")
            reassured = visit is not None and sku in visit.reassured
            kind = self.kind(sku)
            chance = truth.return_chance(self.world, shopper.customer, kind, regret, reassured)
            if u < chance:
                back = t + (3.0 + 7.0 * self.u(order_id, sku, "when")) * DAY_S
                self._returned(shopper, back, order_id, sku, price * (1.0 - discount))

    def _returned(self, shopper: _Shopper, t: float, order_id: str, sku: str, paid: float) -> None:
        if t > self.end:
            return
        self.emit(shopper, t, "order_returned", order_id=order_id, items=[{"sku": sku, "qty": 1}])
        self.emit(shopper, t + 3600.0, "refund", order_id=order_id, amount=round(paid, 2))
        self.ledger.returned_items += 1
        self.ledger.return_loss += paid - self.cost(sku) + self.world.handling_cost

    def unsubscribe(self, shopper: _Shopper, channel: str, t: float, action_id: str) -> None:
        shopper.unsubscribed.add(channel)
        self.ledger.unsubscribes += 1
        self.emit(
            shopper, t, "message_feedback", channel=channel, kind="unsubscribe", action_id=action_id
        )

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
            self.push(max(action.not_before.timestamp(), t), "deliver", (shopper, action))

    def _scheduled(self, t: float, payload: tuple[_Shopper, Action]) -> None:
        shopper, action = payload
        if shopper.pending.pop(action.action_id, None) is None:
            return  # cancelled by a suppression
        if action.expires_at.timestamp() < t or action.channel in shopper.unsubscribed:
            return
        self._deliver(shopper, action, t)

    def _deliver(self, shopper: _Shopper, action: Action, t: float) -> None:
        channel = action.channel
        self.ledger.channel_cost += self.world.channels[channel].cost
        self.ledger.delivered[channel] += 1
        respond(self, shopper, action, t)

    def take_up(self, shopper: _Shopper, action: Action, relation: str, at: float) -> None:
        """The shopper buys what was offered (at a discount under cost_efficiency)."""
        sku = action.offer_sku
        assert sku is not None
        aid = action.action_id
        price = self.price(sku) * (
            1.0 - (self.world.discount if action.frame == "cost_efficiency" else 0.0)
        )
        regret = self.world.regret[action.intensity]
        if relation == "subscription":
            base = self.subscription_of.get(sku)
            self.emit(shopper, at, "subscription_started", sku=sku, subscription_id=aid[:16])
            self.ledger.subscriptions += 1
            if base is not None:
                shopper.subscribed.add(base)
            self.push(at + 60.0, "cycle", (shopper, sku, aid, 0))
            return
        visit = shopper.visit
        if relation == "upgrade" and visit is not None and not visit.ordered:
            bases = self.bases.get((sku, "upgrade"), set())
            swapped = [s for s in visit.cart if s in bases]
            if swapped:  # the upgrade replaces the item in the cart
                visit.cart = [sku if s == swapped[0] else s for s in visit.cart]
                return
        self.order(shopper, at, [(sku, price)], 0.0, f"{aid[:16]}-o", [], None, regret)

    def _cycle(self, t: float, payload: tuple[_Shopper, str, str, int]) -> None:
        """One delivery of a subscription, while the subscriber keeps it."""
        shopper, sku, action_id, n = payload
        if self.u(action_id, "keep", n) >= self.world.subscription_keep:
            base = self.subscription_of.get(sku)
            shopper.subscribed.discard(base or "")
            return
        self.order(shopper, t, [(sku, self.price(sku))], 0.0, f"{action_id[:16]}-c{n}", [])
        product = self.catalog.get(sku)
        if product is not None and product.refill_days:
            self.push(t + product.refill_days * DAY_S, "cycle", (shopper, sku, action_id, n + 1))

    # -- catalog ------------------------------------------------------------------------------
    def price(self, sku: str) -> float:
        product = self.catalog.get(sku)
        return product.price if product is not None else 0.0

    def cost(self, sku: str) -> float:
        product = self.catalog.get(sku)
        return product.unit_cost if product is not None else 0.0

    def kind(self, sku: str) -> str:
        product = self.catalog.get(sku)
        return product.kind if product is not None else "core"

    def _durable(self, sku: str) -> bool:
        return self.kind(sku) in _DURABLE
