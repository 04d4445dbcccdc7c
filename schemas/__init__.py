"""tact's public contract: the events it consumes and the Action records it produces.

Connectors and replays depend on these names and fields (Outcome records are what followed
each Action); JSON Schema files generated from
them live in `schemas/json/` (`tact schemas export`).
"""

from schemas.action import CHANNELS, PLAYS, Action, QuietHours, Suppression
from schemas.clickstream import (
    AddToCart,
    CheckoutStart,
    Consent,
    CouponInteraction,
    DiscountClick,
    MessageFeedback,
    OfferFeedback,
    PageView,
    RemoveFromCart,
    ReviewRead,
    Search,
    SupportContact,
)
from schemas.envelope import Envelope
from schemas.orders import (
    OrderItem,
    OrderPlaced,
    OrderReturned,
    Refund,
    ReturnedItem,
    SubscriptionCancelled,
    SubscriptionStarted,
)
from schemas.outcome import Outcome
from schemas.registry import EVENT_MODELS, FAMILY_OF_TYPE, TopicFamily
from schemas.types import Channel, Frame, Intensity, OutboundChannel, Play

Event = Envelope

__all__ = [
    "CHANNELS",
    "EVENT_MODELS",
    "FAMILY_OF_TYPE",
    "PLAYS",
    "Action",
    "AddToCart",
    "Channel",
    "CheckoutStart",
    "Consent",
    "CouponInteraction",
    "DiscountClick",
    "Envelope",
    "Event",
    "Frame",
    "Intensity",
    "MessageFeedback",
    "OfferFeedback",
    "OrderItem",
    "OrderPlaced",
    "OrderReturned",
    "OutboundChannel",
    "Outcome",
    "PageView",
    "Play",
    "QuietHours",
    "Refund",
    "RemoveFromCart",
    "ReturnedItem",
    "ReviewRead",
    "Search",
    "SubscriptionCancelled",
    "SubscriptionStarted",
    "SupportContact",
    "Suppression",
    "TopicFamily",
]
