"""Which offers a moment considers, and which channels are open to the customer."""

from __future__ import annotations

from typing import Final

from app.anyway import Anyway
from app.catalog import Catalog, Product, Relation
from app.context import Context, Offer
from app.models import Models
from app.policy import OfferRelation, Policy
from app.readiness import DAY

_RELATIONS: Final[tuple[Relation, ...]] = (
    "warranty",
    "subscription",
    "upgrade",
    "accessories",
    "bundle_with",
)
_OWNED_DAYS: Final = 365  # a durable item bought within this is not offered again
_MAX_FOCUS: Final = 5  # items of a cart or order whose relations are considered (the most valuable)
_MAX_MADE: Final = 100_000  # offers kept for reuse (then made afresh)


class Offers:
    """Finds the offers around the items in focus and checks channels against the customer's
    unsubscribes, suppressions, caps and the referee's verdict."""

    def __init__(self, policy: Policy, catalog: Catalog, models: Models, anyway: Anyway) -> None:
        self.policy = policy
        self.catalog = catalog
        self.models = models
        self.anyway = anyway
        # sku -> its catalog offers, most valuable first: (value bound, offer), the offer as
        # made to a customer who has not looked at it and does not have `base`
        self._related: dict[str, tuple[tuple[float, Offer], ...]] = {}
        # offers made for moments, reused by later ones (an Offer is immutable)
        self._made: dict[tuple[str, str, str | None, bool, bool, int], Offer] = {}
        self._need_consent = frozenset(policy.consent.required)
        self._zone = policy.time.assume_utc_offset_minutes  # for customers whose zone is unknown

    # -- offers -------------------------------------------------------------------------------
    def around(self, ctx: Context) -> list[Offer]:
        """Assist on the item in focus, then expand and commit offers around the focus."""
        state = ctx.state
        exclude = set(ctx.focus) | set(state.cart)
        busy = set(exclude)  # what the customer is already looking at or buying
        # what they bought lately and do not use up: rarely bought twice
        since = ctx.t - _OWNED_DAYS * DAY
        exclude.update(sku for sku, at in state.owned.items() if at >= since)
        found: list[Offer] = []
        products = [
            p for p in (self.catalog.get(s) for s in ctx.focus[:_MAX_FOCUS]) if p is not None
        ]
        if products and self.policy.moments[ctx.moment].assist:
            if ctx.moment in ("browse", "cart", "checkout"):
                found.append(self._offer("self", products[0]))
            elif ctx.moment == "post_purchase":
                found.append(self._offer("self", max(products, key=lambda p: p.margin)))
        # (value bound, the offer, or what makes it: affinity offers are made only when kept)
        upsells: list[tuple[float, Offer | tuple[Product, Product, bool, bool]]] = []
        viewed = state.viewed
        # add-ons of what the customer bought lately and has not bought yet (the watches of
        # app/anyway.py): the case for the camera bought last week, offered on any page
        owned = self.anyway.owned(state, ctx.t)
        just_bought = ctx.moment == "post_purchase"
        for base in products:
            related = self._by_base(base)
            has_base = just_bought or base.sku in state.cart
            for bound, offer in related:
                sku = offer.product.sku
                if sku not in exclude:
                    with_base = has_base or (sku, offer.relation) in owned
                    upsells.append((bound, self._variant(offer, viewed.get(sku, 0) > 0, with_base)))
                    exclude.add(sku)
            if not related:
                for sku in self.models.affinity.top(base.sku, self.policy.max_offers):
                    bought_with = self.catalog.get(sku)
                    if bought_with is not None and sku not in exclude:
                        seen = viewed.get(sku, 0) > 0
                        upsells.append((bought_with.margin, (bought_with, base, seen, has_base)))
                        exclude.add(sku)
        for (sku, relation), base_sku in sorted(owned.items()):
            if sku in exclude:
                continue
            for bound, offer in self._by_base(self.catalog.get(base_sku)):
                if offer.product.sku == sku and offer.relation == relation:
                    upsells.append((bound, self._variant(offer, viewed.get(sku, 0) > 0, True)))
                    exclude.add(sku)
                    break
        if self.policy.offer_order == "value":
            upsells.sort(key=lambda pair: -pair[0])  # the most valuable first
        due = ctx.readiness.due_consumable
        offers: list[Offer] = []
        if (
            due
            and due not in busy
            and ctx.readiness.maturity >= self.policy.sequencing.refill_due_from
        ):
            offers = self.refill_offers(due)
        limit = self.policy.moments[ctx.moment].max_offers
        limit = self.policy.max_offers if limit is None else limit
        offers = offers[:limit]
        for _, made in upsells[: limit - len(offers)]:
            offers.append(made if isinstance(made, Offer) else self._offer("affinity", *made))
        if state.offered:  # made before and not bought: as made again
            t, days = ctx.t, self.policy.priors.accept.passed_days
            offers = [self._again(o, state.passed(o.product.sku, t, days)) for o in offers]
        return found + offers

    def _by_base(self, base: Product | None) -> tuple[tuple[float, Offer], ...]:
        if base is None:
            return ()
        related = self._related.get(base.sku)
        if related is None:
            related = self._related[base.sku] = self._by_value(base)
        return related

    def _offer(
        self,
        relation: OfferRelation,
        product: Product,
        base: Product | None = None,
        seen: bool = False,
        with_base: bool = False,
        passed: int = 0,
    ) -> Offer:
        """The offer, made once and reused by later moments."""
        key = (relation, product.sku, None if base is None else base.sku, seen, with_base, passed)
        found = self._made.get(key)
        if found is None or found.product is not product or found.base is not base:
            if len(self._made) >= _MAX_MADE:
                self._made.clear()
            found = self._made[key] = Offer(relation, product, base, seen, with_base, passed=passed)
        return found

    def _variant(self, offer: Offer, seen: bool, with_base: bool) -> Offer:
        """`offer` as made to a customer who has looked at it (`seen`) and has its base."""
        if not seen and not with_base:
            return offer
        return self._offer(offer.relation, offer.product, offer.base, seen, with_base)

    def _again(self, offer: Offer, passed: int) -> Offer:
        """`offer` as made to a customer who was offered it `passed` times before."""
        if passed == offer.passed:
            return offer
        return self._offer(
            offer.relation, offer.product, offer.base, offer.seen, offer.with_base, passed
        )

    def _by_value(self, base: Product) -> tuple[tuple[float, Offer], ...]:
        """The catalog's offers around `base`, most valuable first (what one sale of each
        would earn at most), each as made to a customer who has not looked at it and does not
        have `base`."""
        found = []
        for relation in _RELATIONS:
            for sku in self.catalog.related(base.sku, relation):
                product = self.catalog.get(sku)
                if product is None:
                    continue
                bound = product.margin
                if relation == "upgrade":
                    bound -= base.margin
                elif relation == "subscription":
                    bound *= self.policy.subscription_cycles
                found.append((bound, Offer(relation, product, base)))
        if self.policy.offer_order == "value":
            found.sort(key=lambda entry: -entry[0])
        return tuple(found)

    def refill_offers(self, sku: str) -> list[Offer]:
        product = self.catalog.get(sku)
        if product is None:
            return []
        offers = [self._offer("refill", product, product)]
        for sub in self.catalog.related(sku, "subscription"):
            sub_product = self.catalog.get(sub)
            if sub_product is not None:
                offers.insert(0, self._offer("subscription", sub_product, product))
        return offers

    # -- channels -----------------------------------------------------------------------------
    def channels(self, ctx: Context, delivery: dict[str, float]) -> list[str]:
        """Which of the channels in `delivery` (channel -> delivery time) this customer may be
        reached on (customer-level checks; caps count the day the action lands)."""
        onsite_used = ctx.state.used_today("onsite", ctx.t, self._zone)
        out = []
        for channel, at in delivery.items():
            why = self._closed(ctx, channel, at, onsite_used)
            if why:
                ctx.drops.append((f"channel:{channel}", why))
                ctx.channel_drops.append(f"drop:{channel}:{why}")
            else:
                out.append(channel)
        return out

    def channel_open(self, ctx: Context, channel: str, at: float) -> bool:
        return (
            self._closed(ctx, channel, at, ctx.state.used_today("onsite", ctx.t, self._zone))
            is None
        )

    def _closed(self, ctx: Context, channel: str, at: float, onsite_used: int) -> str | None:
        """Why `channel` is closed to this customer at `at`, or None when it is open."""
        s, p = ctx.state, self.policy
        if channel in s.unsubscribed:
            return "unsubscribed"
        if channel in self._need_consent and not s.consent.get(channel, False):
            return "consent"  # never opted in, or withdrew
        if channel in ctx.assignment.suppressed_channels:
            return "experiment"  # the customer is in this channel's suppression test
        if s.suppressed(channel, at):
            return "suppressed"
        if s.used_today(channel, at, self._zone) >= p.channels[channel].daily_cap:
            return "cap"
        if onsite_used >= p.caps.onsite_per_day and p.counts_onsite(channel):
            return "cap"  # the customer's own surfaces together (what sequencing counts)
        rule = ctx.verdict.channel_block(channel)
        return f"rule:{rule}" if rule is not None else None
