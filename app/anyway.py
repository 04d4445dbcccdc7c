"""What customers buy without being asked, counted from their orders: the part of an offer's
sale that would have happened anyway.

An offer taken up now often replaces a purchase the customer would have made later on their
own: the memory card bought a week after the camera, the refill bought when the last one ran
out, the refills a subscription delivers instead. Attribution windows (72 h) cannot see that,
so tact counts it from orders, for every customer and whatever the engine did:

    follow-on    after an order of an item, how often a related item (accessory, bundle,
                 warranty) is bought within `horizon_days` without an offer of it delivered:
                 a hazard per relation, separately for items the customer had looked at
    refills      how often a consumable is bought again within 1.5 of its refill cycles: the
                 customer's own record, shrunk to everyone's
    views        how often an item looked at is ordered: the chance a base item seen at a
                 product view ends up bought (for add-ons offered before it is)

`anyway(...)` turns these into the chance the offered item is bought on the customer's own
within the horizon: the cannibalisation the arbiter charges (app/arbitration.py). Pure
counts, checkpointed with the models.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from app.catalog import Catalog, Product
from app.readiness import DAY, CustomerState

FOLLOW_RELATIONS = ("accessories", "bundle_with", "warranty")
_MAX_WATCH = 16
_REFILL_SPAN = 1.5  # a rebuy within this many refill cycles keeps the habit


class AnywayCounts:
    """Population counts (the models' part)."""

    def __init__(self) -> None:
        self.follow: dict[str, list[float]] = {}  # "relation|viewed" -> [events, days exposed]
        self.refill = [0.0, 0.0]  # rebought in time, lapsed
        self.views = [0.0, 0.0]  # distinct items viewed, of those later ordered

    def state(self) -> dict[str, Any]:
        return {"follow": self.follow, "refill": self.refill, "views": self.views}

    def restore(self, state: Mapping[str, Any]) -> None:
        self.follow = {k: [float(x) for x in v] for k, v in state.get("follow", {}).items()}
        self.refill = [float(x) for x in state.get("refill", [0.0, 0.0])]
        self.views = [float(x) for x in state.get("views", [0.0, 0.0])]


class Anyway:
    """Counts orders into customer state and population counts, and reads the chances."""

    def __init__(
        self,
        catalog: Catalog,
        counts: AnywayCounts,
        horizon_days: float,
        follow_prior: Mapping[str, float],
        refill_prior: float,
        view_prior: float,
        strength: float,
        learning: bool,
    ) -> None:
        self.catalog = catalog
        self.counts = counts
        self.horizon = horizon_days
        self.follow_prior = follow_prior  # relation -> P(bought within the horizon)
        self.refill_prior = refill_prior
        self.view_prior = view_prior
        self.strength = strength  # what a prior is worth, in observations
        self.learning = learning

    # -- counting -----------------------------------------------------------------------------
    def viewed(self, state: CustomerState, sku: str) -> None:
        """A first view of `sku` by this customer."""
        if self.learning and state.viewed.get(sku, 0) == 0:
            self.counts.views[0] += 1.0

    def ordered(self, state: CustomerState, skus: list[str], t: float, offered: set[str]) -> None:
        """An order: closes follow-on watches it answers, counts rebuys of consumables and
        viewed items bought, and watches the add-ons of what was bought. `offered` are SKUs
        an offer delivered to the customer named (their purchase is not their own)."""
        bought = set(skus)
        self._settle(state, t, bought, offered)
        for sku in bought:
            product = self.catalog.get(sku)
            if product is None:
                continue
            if self.learning and state.viewed.get(sku, 0) > 0:
                self.counts.views[1] += 1.0
            if product.kind == "consumable" and product.refill_days:
                self._rebuy(state, product, t)
            if product.kind in ("core", "premium"):
                self._watch(state, product, t, bought)

    def lapses(self, state: CustomerState, t: float) -> None:
        """Consumables not bought again within their span have lapsed (counted once)."""
        for sku, last in state.consumables.items():
            product = self.catalog.get(sku)
            if product is None or not product.refill_days:
                continue
            record = state.refills.setdefault(sku, [0.0, 0.0, 0.0])
            if record[2] < last and t - last > _REFILL_SPAN * product.refill_days * DAY:
                record[1] += 1.0
                record[2] = last  # this purchase's lapse is counted
                if self.learning:
                    self.counts.refill[1] += 1.0

    def _rebuy(self, state: CustomerState, product: Product, t: float) -> None:
        last = state.consumables.get(product.sku)
        if last is None or not product.refill_days:
            return
        record = state.refills.setdefault(product.sku, [0.0, 0.0, 0.0])
        if t - last <= _REFILL_SPAN * product.refill_days * DAY and record[2] < last:
            record[0] += 1.0
            record[2] = last
            if self.learning:
                self.counts.refill[0] += 1.0

    def _watch(self, state: CustomerState, base: Product, t: float, bought: set[str]) -> None:
        for relation, sku in base.related:
            if relation in FOLLOW_RELATIONS and sku not in bought:
                seen = 1 if state.viewed.get(sku, 0) > 0 else 0
                state.watch.append([sku, relation, t, seen])
        del state.watch[:-_MAX_WATCH]

    def _settle(self, state: CustomerState, t: float, bought: set[str], offered: set[str]) -> None:
        horizon_s = self.horizon * DAY
        kept = []
        for entry in state.watch:
            sku, relation, start, seen = entry
            end = start + horizon_s
            if sku in bought and t <= end:
                if sku not in offered:
                    self._expose(relation, seen, (t - start) / DAY, 1.0)
            elif t > end:
                self._expose(relation, seen, self.horizon, 0.0)
            else:
                kept.append(entry)
        state.watch = kept

    def _expose(self, relation: str, seen: int, days: float, events: float) -> None:
        if not self.learning:
            return
        row = self.counts.follow.setdefault(f"{relation}|{seen}", [0.0, 0.0])
        row[0] += events
        row[1] += max(days, 0.0)

    # -- reading ------------------------------------------------------------------------------
    def follow_on(self, relation: str, seen: bool) -> float:
        """P(an item of `relation` is bought on their own within the horizon, once its base
        is owned): a Gamma-Poisson hazard from the counts, starting at the policy's prior."""
        prior = self.follow_prior.get(relation, 0.0)
        if seen:
            prior = min(2.5 * prior, 0.9)
        rate0 = -math.log(1.0 - prior) / self.horizon  # per day
        events, days = self.counts.follow.get(f"{relation}|{int(seen)}", (0.0, 0.0))
        prior_days = self.strength * self.horizon
        rate = (rate0 * prior_days + events) / (prior_days + days)
        return 1.0 - math.exp(-rate * self.horizon)

    def refill(self, state: CustomerState, sku: str) -> float:
        """P(the customer buys this consumable again this cycle on their own)."""
        rebought, lapsed = self.counts.refill
        k = self.strength
        base = (self.refill_prior * k + rebought) / (k + rebought + lapsed)
        mine = state.refills.get(sku, (0.0, 0.0, 0.0))
        return (base * 2.0 + mine[0]) / (2.0 + mine[0] + mine[1])

    def base_bought(self, seen_views: int) -> float:
        """P(an item looked at is bought): everyone's rate, higher on repeat views."""
        viewed, bought = self.counts.views
        k = self.strength
        rate = (self.view_prior * k + bought) / (k + viewed)
        return min(rate * (1.0 + 0.5 * max(seen_views - 1, 0)), 0.9)
