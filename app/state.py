"""Per-customer state the engine keeps between events, and its compact serialisation."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import date, datetime
from typing import Any

from app import codec
from schemas import AddToCart, Envelope, OrderPlaced, OrderReturned, RemoveFromCart
from schemas.types import parse_event_time


@dataclass(slots=True)
class CustomerState:
    """What tact remembers of one customer. Serialised as JSON into the state store."""

    first_seen: datetime | None = None
    last_seen: datetime | None = None
    events: int = 0
    cart: dict[str, int] = field(default_factory=dict)
    orders: int = 0
    returns: int = 0
    offer_day: str | None = None
    offers_that_day: int = 0

    def observe(self, event: Envelope) -> None:
        """Fold one event into the state."""
        self.events += 1
        if self.last_seen is None or event.ts > self.last_seen:
            self.last_seen = event.ts
        if isinstance(event, AddToCart):
            self.cart[event.sku] = self.cart.get(event.sku, 0) + event.qty
        elif isinstance(event, RemoveFromCart):
            left = self.cart.get(event.sku, 0) - event.qty
            if left > 0:
                self.cart[event.sku] = left
            else:
                self.cart.pop(event.sku, None)
        elif isinstance(event, OrderPlaced):
            self.orders += 1
            self.cart.clear()
        elif isinstance(event, OrderReturned):
            self.returns += 1

    def onsite_offers_on(self, day: date) -> int:
        return self.offers_that_day if self.offer_day == day.isoformat() else 0

    def count_onsite_offer(self, day: date) -> None:
        self.offers_that_day = self.onsite_offers_on(day) + 1
        self.offer_day = day.isoformat()

    def to_bytes(self) -> bytes:
        return codec.dumps(asdict(self))

    @classmethod
    def from_bytes(cls, blob: bytes) -> CustomerState:
        data: dict[str, Any] = codec.loads(blob)
        for name in ("first_seen", "last_seen"):
            if data.get(name) is not None:
                data[name] = parse_event_time(data[name])
        return cls(**data)
