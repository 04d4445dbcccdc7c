"""Event types on the `clickstream` topic."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from schemas.envelope import Envelope
from schemas.types import (
    Identifier,
    MessagingChannel,
    Money,
    OutboundChannel,
    Quantity,
    ShortText,
    Sku,
)

Page = Literal[
    "home",
    "plp",
    "pdp",
    "search",
    "cart",
    "checkout",
    "faq",
    "returns_policy",
    "shipping_policy",
    "size_guide",
    "reviews",
    "account",
]
SearchSort = Literal["relevance", "price_asc", "price_desc", "newest", "rating"]
CouponAction = Literal["view", "apply", "remove", "fail"]
OfferFeedbackKind = Literal["impression", "click", "dismiss", "accept"]
# "expired": a connector could not deliver the Action before its `expires_at` (it came too
# late, or waited past it): the engine then counts it as never delivered.
MessageFeedbackKind = Literal[
    "delivered", "open", "click", "bounce", "unsubscribe", "complaint", "expired"
]


class PageView(Envelope):
    """A page was shown; `sku` for product pages."""

    type: Literal["page_view"]
    page: Page
    sku: Sku | None = None


class ReviewRead(Envelope):
    """Reviews of a product were read, for `seconds` when known."""

    type: Literal["review_read"]
    sku: Sku
    seconds: float | None = Field(default=None, ge=0, allow_inf_nan=False)


class Search(Envelope):
    """A search, with the sort order the customer chose."""

    type: Literal["search"]
    query: ShortText | None = None
    sort: SearchSort | None = None


class CouponInteraction(Envelope):
    """The customer viewed, applied, removed or failed to apply a coupon."""

    type: Literal["coupon_interaction"]
    action: CouponAction
    code: ShortText | None = None


class DiscountClick(Envelope):
    """A click on a promotion or discount banner."""

    type: Literal["discount_click"]
    promo_id: Identifier | None = None


class AddToCart(Envelope):
    """Items were added to the cart at a unit `price`."""

    type: Literal["add_to_cart"]
    sku: Sku
    qty: Quantity
    price: Money


class RemoveFromCart(Envelope):
    """Items were removed from the cart."""

    type: Literal["remove_from_cart"]
    sku: Sku
    qty: Quantity


class CheckoutStart(Envelope):
    """Checkout began with a cart worth `cart_value`."""

    type: Literal["checkout_start"]
    cart_value: Money


class SupportContact(Envelope):
    """The customer contacted support."""

    type: Literal["support_contact"]
    reason: ShortText | None = None


class OfferFeedback(Envelope):
    """What happened to an onsite offer a connector showed (action_id is the Action's)."""

    type: Literal["offer_feedback"]
    action_id: Identifier
    kind: OfferFeedbackKind


class MessageFeedback(Envelope):
    """Delivery and engagement of an outbound message on a channel."""

    type: Literal["message_feedback"]
    channel: OutboundChannel
    kind: MessageFeedbackKind
    action_id: Identifier | None = None


class Consent(Envelope):
    """The customer granted or withdrew consent to marketing on an outbound channel (a
    signup form, a preference centre, or a CRM import). With the policy's `consent.required`
    channels, a customer is contacted there only after a grant and until a withdrawal."""

    type: Literal["consent"]
    channel: MessagingChannel
    granted: bool
    source: ShortText | None = None


CLICKSTREAM_EVENTS: tuple[type[Envelope], ...] = (
    PageView,
    ReviewRead,
    Search,
    CouponInteraction,
    DiscountClick,
    AddToCart,
    RemoveFromCart,
    CheckoutStart,
    SupportContact,
    OfferFeedback,
    MessageFeedback,
    Consent,
)
