"""UCI "Online Retail" (Chen, Sain & Guo 2012; CC BY 4.0) as tact events and a catalog.

Rows are invoice lines: `InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,
CustomerID,Country`. An invoice becomes one `order_placed`; a cancellation (`C` invoice,
negative quantities) one `order_returned` whose order is unknown to tact, as the contract
allows. Left out, and counted: lines without a customer (nothing to key them by), non-product
codes (postage, fees, discounts, manual adjustments, vouchers), bad-debt adjustments (`A`
invoices) and lines of zero price or quantity. Invoice times are UK local time; events carry UTC.

The data has no unit costs: the catalog assumes one gross margin for every product (an
assumption, stated in the catalog the adapter writes and in the README).
"""

from __future__ import annotations

import contextlib
import csv
import gzip
import io
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from statistics import median
from typing import IO, Any, cast
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from app.catalog import ProductSpec
from schemas.types import format_event_time

NON_PRODUCT = frozenset(
    {"POST", "DOT", "M", "m", "C2", "D", "S", "BANK CHARGES", "AMAZONFEE", "CRUK", "PADS", "B"}
)
_PRODUCT = re.compile(r"\d{5}[A-Za-z]{0,3}|DCGS\w+")
DEFAULT_MARGIN = 0.45


@dataclass
class UciStats:
    rows: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    orders: int = 0
    returns: int = 0
    customers: set[str] = field(default_factory=set)
    products: set[str] = field(default_factory=set)


def _london() -> Any:
    try:
        return ZoneInfo("Europe/London")
    except ZoneInfoNotFoundError:  # no tz database: UK time is within an hour of UTC
        return UTC


def read_rows(path: str | Path) -> Iterator[dict[str, str]]:
    """The CSV's rows (plain or gzip)."""
    with contextlib.ExitStack() as stack:
        stream: IO[bytes] = stack.enter_context(Path(path).open("rb"))
        if str(path).endswith(".gz"):
            stream = cast(IO[bytes], stack.enter_context(gzip.GzipFile(fileobj=stream)))
        text = stack.enter_context(io.TextIOWrapper(stream, encoding="utf-8", newline=""))
        yield from csv.DictReader(text)


def convert(rows: Iterable[dict[str, str]], stats: UciStats) -> list[dict[str, Any]]:
    """Events in time order (invoice lines grouped into orders and returns)."""
    uk = _london()
    invoices: dict[str, dict[str, Any]] = {}
    lines: dict[str, dict[str, list[float]]] = defaultdict(dict)  # invoice -> sku -> [qty, price]
    for row in rows:
        stats.rows += 1
        invoice, code = row["InvoiceNo"].strip(), row["StockCode"].strip()
        customer = row["CustomerID"].strip().removesuffix(".0")
        quantity, price = int(row["Quantity"]), float(row["UnitPrice"])
        reason = _skip_reason(invoice, code, customer, quantity, price)
        if reason:
            stats.skipped[reason] += 1
            continue
        if invoice not in invoices:
            when = datetime.fromisoformat(row["InvoiceDate"]).replace(tzinfo=uk)
            invoices[invoice] = {"customer": customer, "ts": when.astimezone(UTC)}
        line = lines[invoice].setdefault(code, [0.0, price])
        line[0] += abs(quantity)
        stats.customers.add(customer)
        stats.products.add(code)
    events = [_event(no, meta, lines[no], stats) for no, meta in invoices.items()]
    events.sort(key=lambda e: (e["ts"], e["event_id"]))
    return events


def _skip_reason(invoice: str, code: str, customer: str, quantity: int, price: float) -> str:
    if not customer:
        return "no customer"
    if code in NON_PRODUCT or code.startswith("gift_") or not _PRODUCT.fullmatch(code):
        return "not a product"
    if invoice.startswith("A"):
        return "bad-debt adjustment"
    if price <= 0 or quantity == 0:
        return "zero price or quantity"
    if (quantity < 0) != invoice.startswith("C"):
        return "stock adjustment"
    return ""


def _event(
    invoice: str, meta: dict[str, Any], lines: dict[str, list[float]], stats: UciStats
) -> dict[str, Any]:
    items = [
        {"sku": sku, "qty": int(qty), "price": round(price, 2)}
        for sku, (qty, price) in lines.items()
    ]
    event: dict[str, Any] = {
        "event_id": f"uci-{invoice}",
        "customer_id": meta["customer"],
        "ts": format_event_time(meta["ts"]),
        "source": "uci-online-retail",
        "order_id": invoice,
    }
    if invoice.startswith("C"):
        stats.returns += 1
        return {**event, "type": "order_returned", "items": items, "reason": "cancellation"}
    stats.orders += 1
    total = round(sum(qty * price for qty, price in lines.values()), 2)
    return {**event, "type": "order_placed", "items": items, "total": total}


def catalog(rows: Iterable[dict[str, str]], margin: float = DEFAULT_MARGIN) -> list[ProductSpec]:
    """A catalog of the products sold: the typical price, an assumed unit cost."""
    prices: dict[str, list[float]] = defaultdict(list)
    titles: dict[str, Counter[str]] = defaultdict(Counter)
    for row in rows:
        code, price = row["StockCode"].strip(), float(row["UnitPrice"])
        if _PRODUCT.fullmatch(code) and code not in NON_PRODUCT and price > 0:
            prices[code].append(price)
            titles[code][row["Description"].strip()] += 1
    specs = []
    for code in sorted(prices):
        price = round(median(prices[code]), 2)
        title = titles[code].most_common(1)[0][0] if titles[code] else code
        specs.append(
            ProductSpec(
                sku=code,
                title=title,
                category="gifts",
                price=price,
                unit_cost=round(price * (1 - margin), 2),
                kind="core",
            )
        )
    return specs
