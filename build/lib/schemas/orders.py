"""Event types on the `orders` topic."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from schemas.envelope import Envelope
from schemas.types import Identifier, Money, Quantity, ShortText, Sku


class OrderItem(BaseModel):
    """One line of an order."""

    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)

    sku: Sku
    qty: Quantity
    price: Money


class ReturnedItem(BaseModel):
    """One line of a return; the price may be unknown to the returns system."""

    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)

    sku: Sku
    qty: Quantity
    price: Money | None = None


class OrderPlaced(Envelope):
    """An order was placed."""

    type: Literal["order_placed"]
    order_id: Identifier
    items: list[OrderItem] = Field(min_length=1, max_length=1000)
    total: Money
    discount_total: Money | None = None
    coupon_code: ShortText | None = None
    shipping_method: ShortText | None = None


class OrderReturned(Envelope):
    """Items of an order came back; the order may predate what tact has seen."""

    type: Literal["order_returned"]
    order_id: Identifier
    items: list[ReturnedItem] = Field(min_length=1, max_length=1000)
    reason: ShortText | None = None


class Refund(Envelope):
    """Money was refunded on an order."""

    type: Literal["refund"]
    order_id: Identifier
    amount: Money


class SubscriptionStarted(Envelope):
    """A subscription to a SKU began."""

    type: Literal["subscription_started"]
    sku: Sku
    subscription_id: Identifier | None = None


class SubscriptionCancelled(Envelope):
    """A subscription to a SKU ended."""

    type: Literal["subscription_cancelled"]
    sku: Sku
    subscription_id: Identifier | None = None


ORDER_EVENTS: tuple[type[Envelope], ...] = (
    OrderPlaced,
    OrderReturned,
    Refund,
    SubscriptionStarted,
    SubscriptionCancelled,
)
