"""REES46 "eCommerce behavior data from multi category store" (Kaggle; credit REES46 Marketing
Platform, rees46.com; not redistributable: read it from ../shared/datasets) as tact events
and a catalog.

Rows: `event_time,event_type,product_id,category_id,category_code,brand,price,user_id,
user_session`. A `view` becomes a product page view, a `cart` an add to cart, and the
`purchase` rows of one user, session and second one `order_placed` with those items. Left out,
and counted: rows of an unknown event type and rows missing a user or product or with a price
that is not a number. The data has no unit costs: the catalog assumes one gross margin.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from statistics import median
from typing import Any

from app.catalog import ProductSpec
from app.datasets.uci import read_rows
from schemas.types import format_event_time

DEFAULT_MARGIN = 0.30
SOURCE = "rees46"


@dataclass
class Rees46Stats:
    rows: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    by_type: Counter[str] = field(default_factory=Counter)
    customers: set[str] = field(default_factory=set)
    products: set[str] = field(default_factory=set)


def _time(text: str) -> datetime:
    """`2019-10-01 00:00:04 UTC` -> an aware datetime."""
    return datetime.strptime(text.strip().removesuffix(" UTC"), "%Y-%m-%d %H:%M:%S").replace(
        tzinfo=UTC
    )


def _skip_reason(row: dict[str, str]) -> str:
    if row.get("event_type") not in ("view", "cart", "purchase"):
        return "unknown event type"
    if not (row.get("user_id") or "").strip() or not (row.get("product_id") or "").strip():
        return "no user or product"
    try:
        if float(row["price"]) < 0:
            return "negative price"
    except (TypeError, ValueError):
        return "price is not a number"
    try:
        _time(row["event_time"])
    except (KeyError, ValueError):
        return "bad time"
    return ""


def convert(rows: Iterable[dict[str, str]], stats: Rees46Stats) -> list[dict[str, Any]]:
    """Events in time order."""
    events: list[dict[str, Any]] = []
    orders: dict[tuple[str, str, str], dict[str, Any]] = {}
    for number, row in enumerate(rows, start=1):
        stats.rows += 1
        reason = _skip_reason(row)
        if reason:
            stats.skipped[reason] += 1
            continue
        customer = f"r{row['user_id'].strip()}"
        sku = row["product_id"].strip()
        price = round(float(row["price"]), 2)
        ts = format_event_time(_time(row["event_time"]))
        session = (row.get("user_session") or "").strip() or None
        stats.customers.add(customer)
        stats.products.add(sku)
        base: dict[str, Any] = {
            "event_id": f"{SOURCE}-{number}",
            "customer_id": customer,
            "ts": ts,
            "source": SOURCE,
            **({"session_id": session} if session else {}),
        }
        kind = row["event_type"]
        if kind == "view":
            events.append({**base, "type": "page_view", "page": "pdp", "sku": sku})
        elif kind == "cart":
            events.append({**base, "type": "add_to_cart", "sku": sku, "qty": 1, "price": price})
        else:  # purchase rows of one user, session and second form one order
            key = (customer, session or "", ts)
            order = orders.get(key)
            if order is None:
                order = orders[key] = {
                    **base,
                    "type": "order_placed",
                    "order_id": f"{SOURCE}-o{number}",
                    "items": [],
                    "total": 0.0,
                }
                events.append(order)
            order["items"].append({"sku": sku, "qty": 1, "price": price})
            order["total"] = round(order["total"] + price, 2)
            continue
        stats.by_type[events[-1]["type"]] += 1
    stats.by_type["order_placed"] = len(orders)
    events.sort(key=lambda e: (e["ts"], int(e["event_id"].rsplit("-", 1)[1])))
    return events


def catalog(rows: Iterable[dict[str, str]], margin: float = DEFAULT_MARGIN) -> list[ProductSpec]:
    """The products seen: the typical price, the category and brand, an assumed unit cost."""
    prices: dict[str, list[float]] = defaultdict(list)
    names: dict[str, tuple[str, str]] = {}
    for row in rows:
        if _skip_reason(row):
            continue
        sku = row["product_id"].strip()
        prices[sku].append(float(row["price"]))
        names.setdefault(
            sku, ((row.get("category_code") or "").strip(), (row.get("brand") or "").strip())
        )
    specs = []
    for sku in sorted(prices):
        price = round(median(prices[sku]), 2)
        category, brand = names[sku]
        specs.append(
            ProductSpec(
                sku=sku,
                title=" ".join(p for p in (brand, category.rsplit(".", 1)[-1]) if p) or sku,
                category=category.split(".", 1)[0] if category else "uncategorised",
                price=price,
                unit_cost=round(price * (1 - margin), 2),
                kind="core",
            )
        )
    return specs


__all__ = ["DEFAULT_MARGIN", "Rees46Stats", "catalog", "convert", "read_rows"]
