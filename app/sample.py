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
from datetime import UTC, datetime, timedelta
from typing import Any

from app.catalog import Catalog, ProductSpec
from schemas.types import format_event_time

# A Monday in the past: the worker takes events dated after its clock for a broken producer
# clock (dead letters, `future_timestamp`), and the sample spans about ten weeks.
DEFAULT_START = datetime(2025, 11, 3, 8, 0, tzinfo=UTC)


def _p(
    sku: str,
    title: str,
    category: str,
    price: float,
    cost: float,
    kind: str,
    refill_days: int | None = None,
    **related: object,
) -> ProductSpec:
    return ProductSpec.model_validate(
        {
            "sku": sku,
            "title": title,
            "category": category,
            "price": price,
            "unit_cost": cost,
            "kind": kind,
            "refill_days": refill_days,
            "related": related,
        }
    )


# A running and outdoor store: cores with accessories, consumables with subscriptions,
# electronics with warranties and premium upgrades, and some thin-margin items.
DEMO_CATALOG: tuple[ProductSpec, ...] = (
    _p(
        "RUN-SHOE-01",
        "Trail running shoe",
        "shoes",
        129.0,
        70.0,
        "core",
        accessories=["RUN-SOCK-01", "RUN-INSOLE-01"],
        warranty="RUN-SHOE-CARE",
        upgrade="RUN-SHOE-PRO",
    ),
    _p(
        "RUN-SHOE-02",
        "Road running shoe",
        "shoes",
        109.0,
        62.0,
        "core",
        accessories=["RUN-SOCK-01", "RUN-INSOLE-01"],
        upgrade="RUN-SHOE-PRO",
    ),
    _p(
        "RUN-SHOE-PRO",
        "Carbon racing shoe",
        "shoes",
        229.0,
        120.0,
        "premium",
        accessories=["RUN-SOCK-02"],
        warranty="RUN-SHOE-CARE",
    ),
    _p("RUN-SHOE-CARE", "Shoe care plan, 1 year", "services", 15.0, 3.0, "warranty"),
    _p("RUN-SOCK-01", "Merino running socks (3 pack)", "apparel", 24.0, 11.0, "accessory"),
    _p("RUN-SOCK-02", "Compression socks", "apparel", 35.0, 14.0, "accessory"),
    _p("RUN-INSOLE-01", "Cushioned insoles", "accessories", 29.0, 12.0, "accessory"),
    _p(
        "RUN-GEL-12",
        "Energy gels, box of 12",
        "nutrition",
        21.0,
        9.5,
        "consumable",
        30,
        subscription="RUN-GEL-SUB",
        bundle_with=["RUN-BOTTLE-01"],
    ),
    _p(
        "RUN-GEL-SUB",
        "Energy gels, monthly subscription",
        "nutrition",
        18.9,
        9.5,
        "subscription",
        30,
    ),
    _p(
        "RUN-ELEC-20",
        "Electrolyte tablets, tube of 20",
        "nutrition",
        9.0,
        6.4,
        "consumable",
        21,
        subscription="RUN-ELEC-SUB",
    ),
    _p(
        "RUN-ELEC-SUB",
        "Electrolyte tablets, subscription",
        "nutrition",
        8.1,
        6.4,
        "subscription",
        21,
    ),
    _p("RUN-BOTTLE-01", "Soft flask 500 ml", "accessories", 18.0, 7.0, "accessory"),
    _p(
        "RUN-VEST-01",
        "Hydration vest",
        "packs",
        119.0,
        58.0,
        "core",
        accessories=["RUN-BOTTLE-01", "RUN-GEL-12"],
    ),
    _p(
        "RUN-WATCH-01",
        "GPS running watch",
        "electronics",
        249.0,
        150.0,
        "core",
        accessories=["RUN-STRAP-01", "RUN-HRM-01"],
        warranty="RUN-CARE-01",
        upgrade="RUN-WATCH-02",
    ),
    _p(
        "RUN-WATCH-02",
        "GPS watch Pro",
        "electronics",
        449.0,
        250.0,
        "premium",
        accessories=["RUN-STRAP-01", "RUN-HRM-01"],
        warranty="RUN-CARE-01",
    ),
    _p("RUN-CARE-01", "2-year watch protection", "services", 39.0, 6.0, "warranty"),
    _p("RUN-STRAP-01", "Spare watch strap", "electronics", 25.0, 8.0, "accessory"),
    _p("RUN-HRM-01", "Chest heart-rate strap", "electronics", 69.0, 48.0, "accessory"),
    _p(
        "RUN-JACKET-01",
        "Waterproof running jacket",
        "apparel",
        149.0,
        72.0,
        "core",
        accessories=["RUN-CAP-01"],
    ),
    _p("RUN-CAP-01", "Running cap", "apparel", 22.0, 20.0, "accessory"),
    _p("RUN-BELT-01", "Running belt", "accessories", 22.0, 19.5, "accessory"),
    _p("RUN-LAMP-01", "Head torch", "accessories", 45.0, 21.0, "core", accessories=["RUN-BATT-4"]),
    _p("RUN-BATT-4", "Rechargeable batteries, 4 pack", "accessories", 16.0, 14.2, "consumable", 90),
    _p("RUN-ROLLER-01", "Foam roller", "recovery", 35.0, 15.0, "accessory"),
    _p("RUN-MASSAGE-01", "Massage gun", "recovery", 189.0, 95.0, "premium", warranty="RUN-CARE-01"),
)

# The products customers browse and buy directly (subscriptions and plans are only offered).
_SHELF = tuple(p for p in DEMO_CATALOG if p.kind not in ("subscription", "warranty"))


DEMO_PRODUCTS: tuple[ProductSpec, ...] = _SHELF


def demo_catalog() -> Catalog:
    return Catalog.from_specs(DEMO_CATALOG)


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

    def browse(self, products: list[ProductSpec], depth: int) -> None:
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

    def buy(self, products: list[ProductSpec], coupon: str | None = None) -> str:
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
    for channel, share in (("email", 0.6), ("sms", 0.25)):  # the signup form's opt-ins
        c.emit("consent", channel=channel, granted=rng.random() < share, source="signup")
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
