"""A seeded generator of realistic shopping streams, for the demo, tests and benchmarks.

Customers arrive over time and follow one of a few personas: window shoppers who browse
and leave, careful buyers who read reviews and policies before buying, bargain hunters who
sort by price and chase coupons, repeat buyers of consumables, and buyers who send things
back. Events come out in event-time order across customers, each customer's in its own
order, with deterministic event ids: the same seed always gives the same stream.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from schemas.types import format_event_time

DEFAULT_START = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Product:
    sku: str
    title: str
    category: str
    price: float


DEMO_PRODUCTS: tuple[Product, ...] = (
    Product("RUN-SHOE-01", "Trail running shoe", "shoes", 129.0),
    Product("RUN-SHOE-02", "Road running shoe", "shoes", 109.0),
    Product("RUN-SOCK-01", "Merino running socks (3 pack)", "apparel", 24.0),
    Product("RUN-INSOLE-01", "Cushioned insoles", "accessories", 29.0),
    Product("RUN-GEL-12", "Energy gels, box of 12", "nutrition", 21.0),
    Product("RUN-BOTTLE-01", "Soft flask 500 ml", "accessories", 18.0),
    Product("RUN-WATCH-01", "GPS running watch", "electronics", 249.0),
    Product("RUN-WATCH-02", "GPS watch Pro", "electronics", 449.0),
    Product("RUN-CARE-01", "2-year watch protection", "services", 39.0),
    Product("RUN-JACKET-01", "Waterproof running jacket", "apparel", 149.0),
    Product("RUN-BELT-01", "Running belt", "accessories", 22.0),
    Product("RUN-LAMP-01", "Head torch", "accessories", 45.0),
)

_PERSONAS = (
    ("window_shopper", 0.35),
    ("careful_buyer", 0.25),
    ("bargain_hunter", 0.15),
    ("repeat_buyer", 0.15),
    ("returner", 0.10),
)


class _Customer:
    """Builds one customer's events in time order."""

    def __init__(self, index: int, start: datetime, rng: random.Random, prefix: str) -> None:
        self.id = f"{prefix}{index:06d}"
        self.rng = rng
        self.t = start
        self.events: list[dict[str, Any]] = []
        self.session = 0
        self.orders = 0

    def emit(self, event_type: str, gap_s: tuple[float, float] = (4, 40), **fields: Any) -> None:
        self.t += timedelta(seconds=self.rng.uniform(*gap_s))
        self.events.append(
            {
                "event_id": f"{self.id}-{len(self.events):04d}",
                "type": event_type,
                "customer_id": self.id,
                "ts": format_event_time(self.t),
                "session_id": f"{self.id}-s{self.session}",
                "source": "web",
                **fields,
            }
        )

    def new_session(self, after: timedelta) -> None:
        self.session += 1
        self.t += after

    def browse(self, products: list[Product], depth: int) -> None:
        self.emit("page_view", page="home")
        if self.rng.random() < 0.5:
            self.emit(
                "search",
                query=products[0].category,
                sort=self.rng.choice(["relevance", "rating", "newest"]),
            )
        self.emit("page_view", page="plp")
        for product in products[:depth]:
            self.emit("page_view", page="pdp", sku=product.sku)
            if self.rng.random() < 0.4:
                self.emit(
                    "review_read", sku=product.sku, seconds=round(self.rng.uniform(5, 180), 1)
                )

    def buy(self, products: list[Product], coupon: str | None = None) -> str:
        for product in products:
            self.emit("add_to_cart", sku=product.sku, qty=1, price=product.price)
        if len(products) > 1 and self.rng.random() < 0.15:
            dropped = products.pop()
            self.emit("remove_from_cart", sku=dropped.sku, qty=1)
        total = round(sum(p.price for p in products), 2)
        self.emit("page_view", page="cart")
        self.emit("checkout_start", cart_value=total)
        discount = 0.0
        if coupon:
            self.emit("coupon_interaction", action="apply", code=coupon)
            discount = round(total * 0.1, 2)
        order_id = f"{self.id}-o{self.orders}"
        self.orders += 1
        order: dict[str, Any] = {
            "order_id": order_id,
            "items": [{"sku": p.sku, "qty": 1, "price": p.price} for p in products],
            "total": round(total - discount, 2),
            "shipping_method": self.rng.choice(["standard", "standard", "express"]),
        }
        if coupon:
            order["coupon_code"] = coupon
            order["discount_total"] = discount
        self.emit("order_placed", **order)
        return order_id


def _customer_events(index: int, start: datetime, seed: int, prefix: str) -> list[dict[str, Any]]:
    rng = random.Random(f"{seed}:{index}")
    c = _Customer(index, start, rng, prefix)
    persona = rng.choices([p for p, _ in _PERSONAS], weights=[w for _, w in _PERSONAS])[0]
    picks = rng.sample(DEMO_PRODUCTS, k=4)
    if persona == "window_shopper":
        c.browse(picks, depth=rng.randint(1, 3))
        if rng.random() < 0.3:
            c.emit("add_to_cart", sku=picks[0].sku, qty=1, price=picks[0].price)
    elif persona == "careful_buyer":
        c.browse(picks, depth=3)
        for page in rng.sample(["faq", "returns_policy", "shipping_policy", "size_guide"], k=2):
            c.emit("page_view", page=page)
        c.buy(picks[: rng.randint(1, 2)])
    elif persona == "bargain_hunter":
        c.emit("search", query=picks[0].category, sort="price_asc")
        c.emit("discount_click", promo_id="BLACKFRIDAY")
        c.emit("coupon_interaction", action="view", code="SAVE10")
        c.browse(picks, depth=2)
        c.buy(picks[:1], coupon="SAVE10")
    elif persona == "repeat_buyer":
        gel = next(p for p in DEMO_PRODUCTS if p.sku == "RUN-GEL-12")
        for _ in range(rng.randint(2, 3)):
            c.browse([gel, *picks[:1]], depth=1)
            c.buy([gel])
            c.new_session(timedelta(days=rng.uniform(20, 35)))
    else:  # returner
        c.browse(picks, depth=2)
        c.emit("page_view", page="size_guide")
        order_id = c.buy(picks[:2])
        c.new_session(timedelta(days=rng.uniform(3, 10)))
        c.emit("page_view", page="returns_policy")
        c.emit("support_contact", reason="fit")
        c.emit(
            "order_returned",
            order_id=order_id,
            items=[{"sku": picks[0].sku, "qty": 1, "price": picks[0].price}],
            reason="fit",
        )
        c.emit("refund", order_id=order_id, amount=picks[0].price)
    return c.events


def generate(
    customers: int,
    seed: int = 0,
    start: datetime = DEFAULT_START,
    arrival_span: timedelta = timedelta(hours=8),
    prefix: str = "c",
) -> Iterator[dict[str, Any]]:
    """Events of `customers` customers arriving over `arrival_span`, in event-time order."""
    rng = random.Random(seed)
    streams = []
    for index in range(customers):
        arrival = start + timedelta(seconds=rng.uniform(0, arrival_span.total_seconds()))
        streams.append(_customer_events(index, arrival, seed, prefix))
    return heapq.merge(*streams, key=lambda e: e["ts"])
