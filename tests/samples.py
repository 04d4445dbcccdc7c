"""Valid and invalid sample events for every type: the contract's examples, used by tests."""

from __future__ import annotations

from typing import Any

ENVELOPE: dict[str, Any] = {
    "event_id": "e-1",
    "customer_id": "cust-1",
    "ts": "2026-11-02T10:15:00+01:00",
    "session_id": "s-1",
    "source": "web",
}

VALID: dict[str, dict[str, Any]] = {
    "page_view": {"page": "pdp", "sku": "SKU-1"},
    "review_read": {"sku": "SKU-1", "seconds": 42.5},
    "search": {"query": "trail shoes", "sort": "price_asc"},
    "coupon_interaction": {"action": "apply", "code": "SAVE10"},
    "discount_click": {"promo_id": "BF"},
    "add_to_cart": {"sku": "SKU-1", "qty": 2, "price": 19.99},
    "remove_from_cart": {"sku": "SKU-1", "qty": 1},
    "checkout_start": {"cart_value": 39.98},
    "support_contact": {"reason": "sizing"},
    "offer_feedback": {"action_id": "a" * 32, "kind": "click"},
    "message_feedback": {"channel": "email", "kind": "open", "action_id": "b" * 32},
    "consent": {"channel": "sms", "granted": True, "source": "checkout_form"},
    "order_placed": {
        "order_id": "o-1",
        "items": [{"sku": "SKU-1", "qty": 2, "price": 19.99}],
        "total": 39.98,
        "discount_total": 0.0,
        "coupon_code": "SAVE10",
        "shipping_method": "express",
    },
    "order_returned": {"order_id": "o-0", "items": [{"sku": "SKU-9", "qty": 1}], "reason": "fit"},
    "refund": {"order_id": "o-1", "amount": 19.99},
    "subscription_started": {"sku": "SKU-SUB", "subscription_id": "sub-1"},
    "subscription_cancelled": {"sku": "SKU-SUB"},
}

# Only required fields: optional ones may be left out.
MINIMAL: dict[str, dict[str, Any]] = {
    "page_view": {"page": "home"},
    "review_read": {"sku": "SKU-1"},
    "search": {},
    "coupon_interaction": {"action": "view"},
    "discount_click": {},
    "add_to_cart": {"sku": "SKU-1", "qty": 1, "price": 0},
    "remove_from_cart": {"sku": "SKU-1", "qty": 1},
    "checkout_start": {"cart_value": 0},
    "support_contact": {},
    "offer_feedback": {"action_id": "x", "kind": "impression"},
    "message_feedback": {"channel": "sms", "kind": "delivered"},
    "consent": {"channel": "email", "granted": False},
    "order_placed": {"order_id": "o", "items": [{"sku": "S", "qty": 1, "price": 1}], "total": 1},
    "order_returned": {"order_id": "o", "items": [{"sku": "S", "qty": 1}]},
    "refund": {"order_id": "o", "amount": 0},
    "subscription_started": {"sku": "S"},
    "subscription_cancelled": {"sku": "S"},
}

# One field-level violation per type: (fields to merge, the field path the error names).
INVALID: dict[str, list[tuple[dict[str, Any], str]]] = {
    "page_view": [({"page": "landing"}, "page"), ({"sku": ""}, "sku")],
    "review_read": [({"sku": None}, "sku"), ({"seconds": -1}, "seconds")],
    "search": [({"sort": "cheapest"}, "sort"), ({"query": 5}, "query")],
    "coupon_interaction": [({"action": "redeem"}, "action")],
    "discount_click": [({"promo_id": 7}, "promo_id")],
    "add_to_cart": [({"qty": 0}, "qty"), ({"price": "19.99"}, "price"), ({"qty": 1.5}, "qty")],
    "remove_from_cart": [({"qty": -1}, "qty")],
    "checkout_start": [({"cart_value": -5}, "cart_value")],
    "support_contact": [({"reason": ["x"]}, "reason")],
    "offer_feedback": [({"kind": "view"}, "kind")],
    "message_feedback": [({"channel": "fax"}, "channel"), ({"kind": "read"}, "kind")],
    "consent": [({"channel": "onsite_pdp"}, "channel"), ({"granted": "yes"}, "granted")],
    "order_placed": [
        ({"items": []}, "items"),
        ({"items": [{"sku": "S", "qty": 1}]}, "items.0.price"),
        ({"total": True}, "total"),
    ],
    "order_returned": [({"items": [{"qty": 1}]}, "items.0.sku")],
    "refund": [({"amount": -1}, "amount")],
    "subscription_started": [({"sku": ""}, "sku")],
    "subscription_cancelled": [({"subscription_id": 3}, "subscription_id")],
}


def event(event_type: str, **overrides: Any) -> dict[str, Any]:
    """A valid event of `event_type`, with `overrides` merged in."""
    return {**ENVELOPE, "type": event_type, **VALID[event_type], **overrides}
