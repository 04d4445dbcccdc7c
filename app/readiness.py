"""Per-customer readiness: time-decayed signals in six families, folded in one event at a time.

Signals are (value, time) pairs that halve every `decay_hours[family]` of event time. Scores in
[0, 1] are read at decision time:

    confidence         repeated product views, review reading depth, policy and FAQ views
    urgency            cart and checkout momentum, the shipping cut-off
    price_sensitivity  coupons, discount clicks, price-ascending sorts, coupon-led orders
    maturity           time since a consumable was bought against its refill_days
    risk               returns and refunds against purchases, support contacts, size-guide views
    posture            per channel: opens and clicks against deliveries, onsite offer feedback

Times are epoch seconds of event time. The state is plain numbers and small dicts, serialised
as compact JSON for the worker's store.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from hashlib import blake2b
from typing import Any, Final

from app import codec

HOUR: Final = 3600.0
DAY: Final = 86400.0
LN2: Final = math.log(2.0)

_MAX_VIEWED: Final = 20
_RECENT_IDS: Final = 8
_MAX_CONSUMABLES: Final = 8
_MAX_OWNED: Final = 24  # durable items remembered per customer (the latest bought)
_MAX_OFFERED: Final = 24  # items offered remembered per customer (the latest offered)
MAX_PASSED: Final = 4  # earlier offers of an item counted at most
_MAX_CART: Final = 50

# Decayed signals: name -> family (its half-life comes from the policy).
SIGNALS: Final[dict[str, str]] = {
    "pdp": "confidence",
    "review": "confidence",
    "policy": "confidence",
    "cart": "urgency",
    "checkout": "urgency",
    "coupon": "price_sensitivity",
    "discount": "price_sensitivity",
    "sort": "price_sensitivity",
    "support": "risk",
    "size": "risk",
    "bought": "risk",
    "returned": "risk",
    "o_shown": "posture",
    "o_click": "posture",
    "o_dismiss": "posture",
}
POSTURE_CHANNELS: Final = ("email", "sms", "paid_retargeting", "account_portal")


def _id_hash(event_id: str) -> int:
    """53 bits of a stable hash: fits a JSON number exactly."""
    return int.from_bytes(blake2b(event_id.encode(), digest_size=8).digest(), "big") >> 11


def decayed(value: float, since: float, now: float, half_life_s: float) -> float:
    if now <= since or value == 0.0:
        return value
    return value * math.exp(-LN2 * (now - since) / half_life_s)


def squash(x: float) -> float:
    """0 -> 0, growing smoothly to 1."""
    return 1.0 - math.exp(-x) if x > 0 else 0.0


@dataclass(slots=True)
class CustomerState:
    """Everything tact keeps about one customer."""

    first_t: float = 0.0
    last_t: float = 0.0
    zone: int | None = None  # UTC offset in minutes, when events told it
    sig: dict[str, list[float]] = field(default_factory=dict)  # name -> [value, time]
    viewed: dict[str, int] = field(default_factory=dict)  # sku -> product page views
    cart: dict[str, list[float]] = field(default_factory=dict)  # sku -> [qty, unit price]
    consumables: dict[str, float] = field(default_factory=dict)  # sku -> last bought (time)
    owned: dict[str, float] = field(default_factory=dict)  # durable sku -> last bought (time)
    # sku -> [offers of it made at a moment (not held out) and not bought since, the latest]
    offered: dict[str, list[float]] = field(default_factory=dict)
    orders: int = 0
    coupon_orders: int = 0
    spend: float = 0.0
    first_order_t: float = 0.0
    last_order_t: float = 0.0
    channels: dict[str, list[float]] = field(
        default_factory=dict
    )  # ch -> [delivered, opened, clicked, time]
    unsubscribed: list[str] = field(default_factory=list)
    consent: dict[str, bool] = field(default_factory=dict)  # channel -> granted (latest)
    suppress: dict[str, float] = field(default_factory=dict)  # channel -> until
    caps: dict[str, list[list[int]]] = field(default_factory=dict)  # channel|onsite -> [[day, n]]
    frames_used: dict[str, list[float]] = field(default_factory=dict)  # frame -> times used
    live: dict[str, list[float]] = field(default_factory=dict)  # moment key -> [decision expires]
    scheduled: list[list[Any]] = field(default_factory=list)  # [at, expires, channel, sku]
    recent: list[int] = field(default_factory=list)  # hashes of the latest event ids
    windows: list[list[Any]] = field(default_factory=list)  # open attribution windows
    # The watermark when the state was saved: a window that had ended before it was still
    # open then (made for an event older than the watermark), and stays open on reload until
    # the watermark moves, as it would have in memory.
    saved_at: float = 0.0
    # add-ons of items bought within the anyway horizon: [sku, relation, since, seen, base]
    watch: list[list[Any]] = field(default_factory=list)
    refills: dict[str, list[float]] = field(default_factory=dict)  # sku -> [rebought, lapsed, at]
    # when the last assist was decided (windows can close before their time when another
    # partition's clock runs ahead: what decides must not depend on them)
    assisted: float = 0.0

    # -- duplicates ---------------------------------------------------------------------------
    def seen_before(self, event_id: str) -> bool:
        """True when this event id came recently (a producer's retry): it must not be
        folded in twice. Otherwise remember it among the last few."""
        key = _id_hash(event_id)
        if key in self.recent:
            return True
        self.recent.append(key)
        if len(self.recent) > _RECENT_IDS:
            del self.recent[0]
        return False

    # -- signals ------------------------------------------------------------------------------
    def bump(self, name: str, now: float, half_life_s: float, amount: float = 1.0) -> None:
        pair = self.sig.get(name)
        if pair is None:
            self.sig[name] = [max(amount, 0.0), now]
        else:
            pair[0] = max(decayed(pair[0], pair[1], now, half_life_s) + amount, 0.0)
            pair[1] = max(pair[1], now)

    # -- small bounded collections ------------------------------------------------------------
    def saw_product(self, sku: str) -> int:
        """Count a product page view; returns the views before this one."""
        before = self.viewed.pop(sku, 0)
        self.viewed[sku] = before + 1
        if len(self.viewed) > _MAX_VIEWED:
            del self.viewed[next(iter(self.viewed))]
        return before

    def add_to_cart(self, sku: str, qty: int, price: float) -> None:
        line = self.cart.get(sku)
        if line:
            line[0] += qty
            line[1] = price
        elif len(self.cart) < _MAX_CART:
            self.cart[sku] = [float(qty), price]

    def remove_from_cart(self, sku: str, qty: int) -> None:
        line = self.cart.get(sku)
        if line:
            line[0] -= qty
            if line[0] <= 0:
                del self.cart[sku]

    def cart_value(self) -> float:
        return sum(q * p for q, p in self.cart.values())

    def bought_consumable(self, sku: str, now: float) -> None:
        self.consumables.pop(sku, None)
        self.consumables[sku] = now
        if len(self.consumables) > _MAX_CONSUMABLES:
            del self.consumables[next(iter(self.consumables))]

    def bought_durable(self, sku: str, now: float) -> None:
        """An item that is not used up: not offered again for a year (app/offers.py)."""
        self.owned.pop(sku, None)
        self.owned[sku] = now
        if len(self.owned) > _MAX_OWNED:
            del self.owned[next(iter(self.owned))]

    def passed(self, sku: str, now: float, days: float) -> int:
        """How often the item was offered to the customer (within `days` of each other and
        of now, at most `MAX_PASSED`) without their buying it since."""
        row = self.offered.get(sku)
        if row is None or now - row[1] > days * DAY:
            return 0
        return min(int(row[0]), MAX_PASSED)

    def note_offer(self, sku: str, now: float, days: float) -> None:
        """An offer of `sku` is made to the customer at a moment (not held out)."""
        if days <= 0:
            return
        times = self.passed(sku, now, days)
        self.offered.pop(sku, None)
        self.offered[sku] = [float(times + 1), max(now, 0.0)]
        if len(self.offered) > _MAX_OFFERED:
            del self.offered[next(iter(self.offered))]

    # -- caps and suppressions ----------------------------------------------------------------
    def zone_or(self, assumed: int | None) -> int | None:
        """The customer's UTC offset (minutes): the one their events told, else the policy's
        `time.assume_utc_offset_minutes` (None: unknown). Caps days and quiet hours both
        read it."""
        return self.zone if self.zone is not None else assumed

    def day_of(self, t: float, assumed: int | None = None) -> int:
        """The customer's local day number (UTC when the zone is unknown)."""
        return int((t + (self.zone_or(assumed) or 0) * 60) // DAY)

    def used_today(self, key: str, t: float, assumed: int | None = None) -> int:
        """Actions counted against `key` on the (local) day of `t`."""
        day = self.day_of(t, assumed)
        for entry in self.caps.get(key, ()):
            if entry[0] == day:
                return int(entry[1])
        return 0

    def count_use(self, key: str, t: float, now: float, assumed: int | None = None) -> None:
        """Count an action landing at `t`, decided at `now`: scheduled actions count on their
        own day and leave today's count alone. Days over before `now` are forgotten."""
        day, today = self.day_of(t, assumed), self.day_of(now, assumed)
        days = [e for e in self.caps.get(key, ()) if e[0] >= today - 1]
        for entry in days:
            if entry[0] == day:
                entry[1] += 1
                break
        else:
            days.append([day, 1])
        self.caps[key] = days

    def suppressed(self, channel: str, t: float) -> bool:
        return self.suppress.get(channel, 0.0) > t

    def quiet(self, channel: str, until: float) -> None:
        if until > self.suppress.get(channel, 0.0):
            self.suppress[channel] = until

    def frame_uses(self, frame: str, since: float) -> int:
        return sum(1 for t in self.frames_used.get(frame, ()) if t >= since)

    def use_frame(self, frame: str, t: float, keep_after: float) -> None:
        times = [x for x in self.frames_used.get(frame, ()) if x >= keep_after]
        times.append(t)
        self.frames_used[frame] = times

    # -- serialisation ------------------------------------------------------------------------
    def to_bytes(self) -> bytes:
        return codec.dumps({name: getattr(self, name) for name in _FIELDS})

    @classmethod
    def from_bytes(cls, blob: bytes) -> CustomerState:
        data = codec.loads(blob)
        return cls(**{k: v for k, v in data.items() if k in _FIELDS})


_FIELDS: Final = tuple(CustomerState.__dataclass_fields__)


@dataclass(slots=True)
class Readiness:
    """Scores at one moment, each in [0, 1] unless noted. Not changed once made (a refill's
    moment takes a copy: `dataclasses.replace`)."""

    confidence: float
    urgency: float
    price_sensitivity: float
    maturity: float  # time since purchase / refill_days of the most mature consumable (0-1.5)
    risk: float
    posture: dict[str, float]  # channel -> engagement, 0.5 when nothing is known
    ltv: float  # predicted value over a year (currency)
    ltv_score: float  # ltv against the policy's high-LTV threshold, capped at 1
    due_consumable: str | None  # the consumable most due for a refill
    new_customer: bool

    # (written out, and so not frozen: mypyc compiles this __init__, while the one dataclasses
    # generates runs as Python, a frozen one setting each field through object.__setattr__:
    # 850 ns a Readiness, one for every moment; tests/unit/test_compiled_core.py checks it)
    def __init__(
        self,
        confidence: float,
        urgency: float,
        price_sensitivity: float,
        maturity: float,
        risk: float,
        posture: dict[str, float],
        ltv: float,
        ltv_score: float,
        due_consumable: str | None,
        new_customer: bool,
    ) -> None:
        self.confidence = confidence
        self.urgency = urgency
        self.price_sensitivity = price_sensitivity
        self.maturity = maturity
        self.risk = risk
        self.posture = posture
        self.ltv = ltv
        self.ltv_score = ltv_score
        self.due_consumable = due_consumable
        self.new_customer = new_customer

    def signal(self, name: str, channel: str) -> float:
        if name == "posture":
            return self.posture.get(channel, 0.5)
        if name == "ltv":
            return self.ltv_score
        return float(getattr(self, name))
