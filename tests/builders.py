"""Scripted shoppers for engine tests: readable scenarios that yield valid events."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from app.sample import DEMO_CATALOG

PRICES = {p.sku: p.price for p in DEMO_CATALOG}


class Shopper:
    """One customer's events, in time order. `zone` is the UTC offset the timestamps carry
    (None writes "Z": the customer's zone is then unknown to tact)."""

    def __init__(
        self, customer_id: str, start: str = "2026-11-02T10:00:00", zone: str | None = None
    ) -> None:
        self.id = customer_id
        offset = timedelta(0)
        if zone is not None:
            sign = -1 if zone.startswith("-") else 1
            hours, minutes = zone.lstrip("+-").split(":")
            offset = sign * timedelta(hours=int(hours), minutes=int(minutes))
        self.zone = zone
        self.tz = timezone(offset)
        self.t = datetime.fromisoformat(start).replace(tzinfo=self.tz)
        self.n = 0
        self.orders = 0

    def wait(self, minutes: float = 0, hours: float = 0, days: float = 0) -> Shopper:
        self.t += timedelta(minutes=minutes, hours=hours, days=days)
        return self

    def event(self, event_type: str, **fields: Any) -> dict[str, Any]:
        self.t += timedelta(seconds=30)
        self.n += 1
        ts = self.t.isoformat(timespec="milliseconds")
        if self.zone is None:
            ts = self.t.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        return {
            "event_id": f"{self.id}-{self.n:04d}",
            "type": event_type,
            "customer_id": self.id,
            "ts": ts,
            **fields,
        }

    def view(self, sku: str) -> dict[str, Any]:
        return self.event("page_view", page="pdp", sku=sku)

    def page(self, page: str) -> dict[str, Any]:
        return self.event("page_view", page=page)

    def read_reviews(self, sku: str, seconds: float = 90) -> dict[str, Any]:
        return self.event("review_read", sku=sku, seconds=seconds)

    def add(self, sku: str, qty: int = 1) -> dict[str, Any]:
        return self.event("add_to_cart", sku=sku, qty=qty, price=PRICES[sku])

    def checkout(self, value: float) -> dict[str, Any]:
        return self.event("checkout_start", cart_value=value)

    def order(self, *skus: str, coupon: str | None = None) -> dict[str, Any]:
        self.orders += 1
        items = [{"sku": s, "qty": 1, "price": PRICES[s]} for s in skus]
        fields: dict[str, Any] = {
            "order_id": f"{self.id}-o{self.orders}",
            "items": items,
            "total": round(sum(PRICES[s] for s in skus), 2),
        }
        if coupon:
            fields["coupon_code"] = coupon
            fields["discount_total"] = round(fields["total"] * 0.1, 2)
        return self.event("order_placed", **fields)

    def return_(self, *skus: str, order: int | None = None) -> dict[str, Any]:
        return self.event(
            "order_returned",
            order_id=f"{self.id}-o{order or self.orders}",
            items=[{"sku": s, "qty": 1} for s in skus],
            reason="fit",
        )

    def coupon(self, action: str = "apply") -> dict[str, Any]:
        return self.event("coupon_interaction", action=action, code="SAVE10")

    def discount_click(self) -> dict[str, Any]:
        return self.event("discount_click", promo_id="SALE")

    def search_cheapest(self) -> dict[str, Any]:
        return self.event("search", query="shoes", sort="price_asc")

    def support(self) -> dict[str, Any]:
        return self.event("support_contact", reason="sizing")

    def consent(self, channel: str = "email", granted: bool = True) -> dict[str, Any]:
        return self.event("consent", channel=channel, granted=granted, source="signup")

    def opt_in(self) -> list[dict[str, Any]]:
        """Consent to email and SMS (the default policy needs it to message anyone)."""
        return [self.consent("email"), self.consent("sms")]

    def message(self, channel: str, kind: str) -> dict[str, Any]:
        return self.event("message_feedback", channel=channel, kind=kind)
