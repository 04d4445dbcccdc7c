"""Folding events into a customer's state, and reading readiness scores from it."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Final

from app.catalog import Catalog
from app.policy import Policy
from app.readiness import (
    DAY,
    HOUR,
    LN2,
    POSTURE_CHANNELS,
    SIGNALS,
    CustomerState,
    Readiness,
    squash,
)
from app.timestamps import zone_offset_minutes
from schemas import (
    AddToCart,
    CheckoutStart,
    Consent,
    CouponInteraction,
    DiscountClick,
    Envelope,
    MessageFeedback,
    OfferFeedback,
    OrderPlaced,
    OrderReturned,
    PageView,
    Refund,
    RemoveFromCart,
    ReviewRead,
    Search,
    SupportContact,
)

_POLICY_PAGES: Final = frozenset({"faq", "returns_policy", "shipping_policy", "reviews"})
_USED_UP: Final = frozenset({"consumable", "subscription"})  # bought again and again
# Returns per item bought before any history: a Beta(1, 9) prior, 10% return rate.
_RETURN_PRIOR_RETURNS: Final = 1.0
_RETURN_PRIOR_ITEMS: Final = 10.0


class ReadinessTracker:
    """update(state, event, t) folds an event in; get(state, t) reads the scores."""

    def __init__(self, policy: Policy, catalog: Catalog) -> None:
        self.policy = policy
        self.catalog = catalog
        d = policy.decay_hours
        family_half_life = {
            "confidence": d.confidence * HOUR,
            "urgency": d.urgency * HOUR,
            "price_sensitivity": d.price_sensitivity * HOUR,
            "risk": d.risk * HOUR,
            "posture": d.posture * HOUR,
        }
        self.half_life = {name: family_half_life[f] for name, f in SIGNALS.items()}
        self.posture_half_life = family_half_life["posture"]
        self._handlers: dict[str, Callable[[CustomerState, Envelope, float], None]] = {
            "page_view": self._page_view,
            "review_read": self._review_read,
            "search": self._search,
            "coupon_interaction": self._coupon,
            "discount_click": self._discount,
            "add_to_cart": self._add_to_cart,
            "remove_from_cart": self._remove_from_cart,
            "checkout_start": self._checkout,
            "support_contact": self._support,
            "offer_feedback": self._offer_feedback,
            "message_feedback": self._message_feedback,
            "consent": self._consent,
            "order_placed": self._order_placed,
            "order_returned": self._order_returned,
            "refund": self._refund,
        }

    # -- update -------------------------------------------------------------------------------
    def update(self, state: CustomerState, event: Envelope, t: float) -> None:
        if not state.first_t:
            state.first_t = t
        state.last_t = max(state.last_t, t)
        zone = zone_offset_minutes(event.ts)
        if zone is not None and event.type != "message_feedback":
            state.zone = zone  # (a message's feedback is stamped by a mail system, not them)
        handler = self._handlers.get(event.type)
        if handler is not None:
            handler(state, event, t)

    def _bump(self, state: CustomerState, name: str, t: float, amount: float = 1.0) -> None:
        state.bump(name, t, self.half_life[name], amount)

    def _page_view(self, s: CustomerState, e: Envelope, t: float) -> None:
        assert isinstance(e, PageView)
        if e.page == "pdp" and e.sku:
            before = s.saw_product(e.sku)
            self._bump(s, "pdp", t, 1.0 if before else 0.3)
        elif e.page in _POLICY_PAGES:
            self._bump(s, "policy", t)
        elif e.page == "size_guide":
            self._bump(s, "size", t)
        elif e.page == "checkout":
            self._bump(s, "checkout", t, 0.5)

    def _review_read(self, s: CustomerState, e: Envelope, t: float) -> None:
        assert isinstance(e, ReviewRead)
        self._bump(s, "review", t, (e.seconds or 30.0) / 60.0)

    def _search(self, s: CustomerState, e: Envelope, t: float) -> None:
        assert isinstance(e, Search)
        if e.sort == "price_asc":
            self._bump(s, "sort", t)

    def _coupon(self, s: CustomerState, e: Envelope, t: float) -> None:
        assert isinstance(e, CouponInteraction)
        self._bump(s, "coupon", t, 1.5 if e.action in ("apply", "fail") else 1.0)

    def _discount(self, s: CustomerState, e: Envelope, t: float) -> None:
        assert isinstance(e, DiscountClick)
        self._bump(s, "discount", t)

    def _add_to_cart(self, s: CustomerState, e: Envelope, t: float) -> None:
        assert isinstance(e, AddToCart)
        s.add_to_cart(e.sku, e.qty, e.price)
        self._bump(s, "cart", t)

    def _remove_from_cart(self, s: CustomerState, e: Envelope, t: float) -> None:
        assert isinstance(e, RemoveFromCart)
        s.remove_from_cart(e.sku, e.qty)
        self._bump(s, "cart", t, -0.5)

    def _checkout(self, s: CustomerState, e: Envelope, t: float) -> None:
        assert isinstance(e, CheckoutStart)
        self._bump(s, "checkout", t)

    def _support(self, s: CustomerState, e: Envelope, t: float) -> None:
        assert isinstance(e, SupportContact)
        self._bump(s, "support", t)

    def _offer_feedback(self, s: CustomerState, e: Envelope, t: float) -> None:
        assert isinstance(e, OfferFeedback)
        if e.kind == "impression":
            self._bump(s, "o_shown", t)
        elif e.kind in ("click", "accept"):
            self._bump(s, "o_click", t)
        else:
            self._bump(s, "o_dismiss", t)

    def _message_feedback(self, s: CustomerState, e: Envelope, t: float) -> None:
        assert isinstance(e, MessageFeedback)
        if e.kind in ("unsubscribe", "complaint"):
            if e.channel not in s.unsubscribed:
                s.unsubscribed.append(e.channel)
            return
        if e.kind == "expired":  # never reached them: says nothing of their posture
            return
        counts = s.channels.get(e.channel)
        if counts is None:
            counts = s.channels[e.channel] = [0.0, 0.0, 0.0, t]
        factor = math.exp(-math.log(2) * max(t - counts[3], 0.0) / self.posture_half_life)
        for i in range(3):
            counts[i] *= factor
        counts[3] = max(counts[3], t)
        index = {"delivered": 0, "open": 1, "click": 2}.get(e.kind)
        if index is not None:
            counts[index] += 1.0
        elif e.kind == "bounce":
            s.quiet(e.channel, t + 7 * DAY)

    def _consent(self, s: CustomerState, e: Envelope, t: float) -> None:
        assert isinstance(e, Consent)
        s.consent[e.channel] = e.granted

    def _order_placed(self, s: CustomerState, e: Envelope, t: float) -> None:
        assert isinstance(e, OrderPlaced)
        s.orders += 1
        s.spend += e.total
        if e.coupon_code or (e.discount_total or 0) > 0:
            s.coupon_orders += 1
        if not s.first_order_t:
            s.first_order_t = t
        s.last_order_t = max(s.last_order_t, t)
        items = 0.0
        for item in e.items:
            items += item.qty
            s.cart.pop(item.sku, None)
            s.offered.pop(item.sku, None)
            product = self.catalog.get(item.sku)
            if product is not None and product.kind == "consumable" and product.refill_days:
                s.bought_consumable(item.sku, t)
            elif product is not None and product.kind not in _USED_UP:
                s.bought_durable(item.sku, t)
        self._bump(s, "bought", t, items)
        s.sig.pop("checkout", None)
        s.sig.pop("cart", None)

    def _order_returned(self, s: CustomerState, e: Envelope, t: float) -> None:
        assert isinstance(e, OrderReturned)
        self._bump(s, "returned", t, float(sum(i.qty for i in e.items)))

    def _refund(self, s: CustomerState, e: Envelope, t: float) -> None:
        assert isinstance(e, Refund)
        self._bump(s, "support", t, 0.5)

    # -- get ----------------------------------------------------------------------------------
    def get(self, s: CustomerState, t: float, aov_prior: float) -> Readiness:
        lv = self._levels(s, t)
        confidence = squash(
            0.45 * lv["pdp"] + 0.6 * lv["review"] + 0.35 * lv["policy"] + 0.25 * min(s.orders, 4)
        )
        urgency = squash(0.5 * lv["cart"] + 0.9 * lv["checkout"] + self._cutoff_pressure(t))
        coupon_share = s.coupon_orders / s.orders if s.orders else 0.0
        price = squash(
            0.45 * lv["coupon"]
            + 0.4 * lv["discount"]
            + 0.4 * lv["sort"]
            + 1.4 * coupon_share * min(s.orders, 3) / 3
        )
        return_rate = (lv["returned"] + _RETURN_PRIOR_RETURNS) / (
            lv["bought"] + _RETURN_PRIOR_ITEMS
        )
        risk = 1.0 - (1.0 - min(return_rate * 1.6, 1.0)) * (1.0 - squash(0.35 * lv["support"])) * (
            1.0 - squash(0.2 * lv["size"])
        )
        maturity, due = self._maturity(s, t) if s.consumables else (0.0, None)
        ltv = self._ltv(s, t, aov_prior)
        return Readiness(
            confidence=confidence,
            urgency=urgency,
            price_sensitivity=price,
            maturity=maturity,
            risk=risk,
            posture=self._posture(s, t, lv),
            ltv=ltv,
            ltv_score=min(ltv / self.policy.segments.ltv_high_from, 1.0),
            due_consumable=due,
            new_customer=s.orders == 0,
        )

    def _levels(self, s: CustomerState, t: float) -> dict[str, float]:
        """Every signal decayed to `t` (0 for signals never seen)."""
        levels = dict.fromkeys(SIGNALS, 0.0)
        half_life = self.half_life
        for name, (value, since) in s.sig.items():
            if value and t > since:
                value *= math.exp(-LN2 * (t - since) / half_life[name])
            levels[name] = value
        return levels

    def _cutoff_pressure(self, t: float) -> float:
        """Up to 0.4 in the three hours before the same-day dispatch cut-off."""
        hour = (t % DAY) / HOUR
        to_cutoff = self.policy.time.shipping_cutoff_hour_utc - hour
        return 0.4 * (1.0 - to_cutoff / 3.0) if 0.0 < to_cutoff <= 3.0 else 0.0

    def _maturity(self, s: CustomerState, t: float) -> tuple[float, str | None]:
        best, due = 0.0, None
        for sku, bought_t in s.consumables.items():
            product = self.catalog.get(sku)
            if product is None or not product.refill_days:
                continue
            m = min((t - bought_t) / (product.refill_days * DAY), 1.5)
            if m > best:
                best, due = m, sku
        return best, due

    def _ltv(self, s: CustomerState, t: float, aov_prior: float) -> float:
        v = self.policy.priors.value
        aov = s.spend / s.orders if s.orders else aov_prior
        if s.orders >= 2 and s.last_order_t > s.first_order_t:
            span_days = (s.last_order_t - s.first_order_t) / DAY
            per_year = min(365.0 * (s.orders - 1) / max(span_days, 1.0), v.max_orders_per_year)
        else:
            per_year = v.new_customer_orders_per_year
        return aov * per_year * v.margin_rate

    def _posture(self, s: CustomerState, t: float, lv: dict[str, float]) -> dict[str, float]:
        posture: dict[str, float] = {}
        for channel in POSTURE_CHANNELS:
            counts = s.channels.get(channel)
            if channel in s.unsubscribed:
                posture[channel] = 0.0
            elif counts:
                delivered, opened, clicked = counts[0], counts[1], counts[2]
                posture[channel] = (opened * 0.4 + clicked + 1.0) / (delivered + 2.0)
                posture[channel] = min(posture[channel], 1.0)
        shown, clicks, dismissed = lv["o_shown"], lv["o_click"], lv["o_dismiss"]
        onsite = (clicks + 1.0) / (shown + dismissed + 2.0) if (shown or dismissed) else 0.5
        for channel in ("onsite_pdp", "onsite_cart", "post_purchase"):
            posture[channel] = min(onsite, 1.0)
        return posture
