"""What customers buy without being asked, counted from their orders: the part of an offer's
sale that would have happened anyway.

An offer taken up now often replaces a purchase the customer would have made later on their
own: the memory card bought a week after the camera, the refill bought when the last one ran
out, the refills a subscription delivers instead. Attribution windows (72 h) cannot see that,
so tact counts it from orders, for every customer and whatever the engine did:

    follow-on    after an order of an item, how often a related item (accessory, bundle,
                 warranty) is bought within `horizon_days` without an offer of it delivered:
                 a hazard per relation, separately for items the customer had looked at,
                 whose exposure counts from the order (customers who never come back are
                 exposed too: counting only those seen again would overstate the rate)
    refills      how often a consumable is bought again within 1.5 of its refill cycles, by
                 deadline (the same reason): everyone's rate, and the customer's own record
    views        how often an item looked at is ordered: the chance a base item seen at a
                 product view ends up bought (for add-ons offered before it is)

`anyway(...)` turns these into the chance the offered item is bought on the customer's own
within the horizon: the cannibalisation the arbiter charges (app/arbitration.py). Pure
counts, checkpointed with the models.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any, Final

from app.catalog import Catalog, Product
from app.readiness import DAY, CustomerState

FOLLOW_RELATIONS: Final = ("accessories", "bundle_with", "warranty")
_MAX_WATCH: Final = 16
_REFILL_SPAN: Final = 1.5  # a rebuy within this many refill cycles keeps the habit


class AnywayCounts:
    """Population counts (the models' part).

    Exposure is counted from when a watch starts, not when it is seen to end: a customer who
    buys nothing and never comes back is exposed for the whole horizon, though no event of
    theirs will say so. Watches still running are kept per start day and count their elapsed
    days; refill chances likewise count an episode once its deadline has passed (or it was
    answered by a rebuy)."""

    def __init__(self) -> None:
        self.follow: dict[str, list[float]] = {}  # "relation|seen" -> [events, closed days]
        self.started: dict[str, dict[str, float]] = {}  # "relation|seen" -> {day: watches}
        self.refill = [0.0, 0.0]  # episodes decided, rebought in time (deadlines passed)
        self.refill_due: dict[str, list[float]] = {}  # deadline day -> [episodes, rebought]
        self.views = [0.0, 0.0]  # distinct items viewed, of those later ordered
        self.version = 0  # moves with the refill and follow-on counts: readers cache by it

    def state(self) -> dict[str, Any]:
        return {
            "follow": self.follow,
            "started": self.started,
            "refill": self.refill,
            "refill_due": self.refill_due,
            "views": self.views,
        }

    def restore(self, state: Mapping[str, Any]) -> None:
        self.follow = {k: [float(x) for x in v] for k, v in state.get("follow", {}).items()}
        self.started = {
            k: {d: float(n) for d, n in v.items()} for k, v in state.get("started", {}).items()
        }
        self.refill = [float(x) for x in state.get("refill", [0.0, 0.0])]
        self.refill_due = {d: [float(x) for x in v] for d, v in state.get("refill_due", {}).items()}
        self.views = [float(x) for x in state.get("views", [0.0, 0.0])]

    # -- changes (app/models.py Models.change) -------------------------------------------------
    def view(self) -> None:
        """A customer's first view of an item."""
        self.views[0] += 1.0

    def view_bought(self) -> None:
        """An item ordered that the customer had looked at."""
        self.views[1] += 1.0

    def episode(self, day: str, index: int) -> None:
        """A refill episode with its deadline on `day` started (`index` 0), or was answered
        by a rebuy (1)."""
        self.version += 1
        self.refill_due.setdefault(day, [0.0, 0.0])[index] += 1.0

    def watch(self, key: str, day: str) -> None:
        """A follow-on watch of `key` ("relation|seen") started on `day`."""
        started = self.started.setdefault(key, {})
        started[day] = started.get(day, 0.0) + 1.0
        self.version += 1

    def settle(self, key: str, day: str, days: float, event: float) -> None:
        """A watch of `key` started on `day` ended by a purchase `days` later: its days move
        out of the start, and the purchase counts (`event` 1) unless an offer named it (0)."""
        started = self.started.get(key, {})
        if started.get(day, 0.0) >= 1.0:
            started[day] -= 1.0
            row = self.follow.setdefault(key, [0.0, 0.0])
            row[1] += days
            row[0] += event
            self.version += 1

    # -- reading ------------------------------------------------------------------------------
    def exposure(self, key: str, t: float, horizon_days: float) -> tuple[float, float]:
        """(events, days exposed by `t`) of a follow-on key; watches past the horizon close."""
        row = self.follow.get(key)  # (made when something closes: reading adds no row)
        open_days = 0.0
        started = self.started.get(key, {})
        today = t / DAY
        for day in list(started):
            elapsed = today - float(day)
            if elapsed >= horizon_days:
                if row is None:
                    row = self.follow[key] = [0.0, 0.0]
                row[1] += started.pop(day) * horizon_days
            elif elapsed > 0:
                open_days += started[day] * elapsed
        if row is None:
            return 0.0, open_days
        return row[0], row[1] + open_days

    def refill_decided(self, t: float) -> tuple[float, float]:
        """(episodes decided, rebought in time) by `t`: deadlines passed, and rebuys before."""
        today = int(t // DAY)
        early = 0.0
        for day in list(self.refill_due):
            episodes, rebought = self.refill_due[day]
            if int(day) < today:
                self.refill[0] += episodes
                self.refill[1] += rebought
                del self.refill_due[day]
            else:
                early += rebought
        return self.refill[0] + early, self.refill[1] + early


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
        change: Callable[..., None],
    ) -> None:
        self.catalog = catalog
        self.counts = counts
        self.change = change  # how a change of the counts is made (app/models.py Models.change)
        self.horizon = horizon_days
        self.follow_prior = follow_prior  # relation -> P(bought within the horizon)
        self.refill_prior = refill_prior
        self.view_prior = view_prior
        self.strength = strength  # what a prior is worth, in observations
        self.learning = learning
        self._follow: dict[tuple[str, bool, int, int], float] = {}
        self._refill_at, self._refill_base = (-1, -1), refill_prior

    # -- counting -----------------------------------------------------------------------------
    def viewed(self, state: CustomerState, sku: str) -> None:
        """A first view of `sku` by this customer."""
        if self.learning and state.viewed.get(sku, 0) == 0:
            self.change("view")

    def ordered(self, state: CustomerState, skus: list[str], t: float, offered: set[str]) -> None:
        """An order: closes follow-on watches it answers, counts rebuys of consumables and
        viewed items bought, and watches the add-ons of what was bought. `offered` are SKUs
        an offer delivered to the customer named (their purchase is not their own)."""
        bought = set(skus)
        self._settle(state, t, bought, offered)
        for sku in dict.fromkeys(skus):  # in the order's order: the same in every process
            product = self.catalog.get(sku)
            if product is None:
                continue
            if self.learning and state.viewed.get(sku, 0) > 0:
                self.change("view_bought")
            if product.kind == "consumable" and product.refill_days:
                self._rebuy(state, product, t)
            if product.kind in ("core", "premium"):
                self._watch(state, product, t, bought)

    def returned(self, state: CustomerState, skus: list[str]) -> None:
        """Items sent back are no longer owned: their add-ons' watches end (uncounted)."""
        back = set(skus)
        state.watch = [w for w in state.watch if len(w) < 5 or w[4] not in back]

    def owned(self, state: CustomerState, t: float) -> dict[tuple[str, str], str]:
        """(add-on sku, relation) -> the base it goes with, for the add-ons of items the
        customer bought within the horizon and has not bought yet (the latest purchase of a
        base when two share an add-on; ties by SKU: the same in every process)."""
        running = sorted(
            (w for w in self._running(state, t) if len(w) > 4), key=lambda w: (w[2], w[4])
        )
        return {(w[0], w[1]): w[4] for w in running}

    def watched(self, state: CustomerState, sku: str, t: float) -> bool:
        """Whether `sku` is an add-on of an item the customer bought within the horizon."""
        return any(w[0] == sku for w in self._running(state, t))

    def _running(self, state: CustomerState, t: float) -> list[list[Any]]:
        """The watches still running at `t` (those past the horizon go at the next order)."""
        since = t - self.horizon * DAY
        return [w for w in state.watch if w[2] >= since]

    def lapses(self, state: CustomerState, t: float) -> None:
        """The customer's own consumables not bought again in time have lapsed (counted
        once; everyone's chances count them by deadline: `AnywayCounts.refill_decided`)."""
        for sku, last in state.consumables.items():
            product = self.catalog.get(sku)
            if product is None or not product.refill_days:
                continue
            record = state.refills.setdefault(sku, [0.0, 0.0, 0.0])
            if record[2] < last and t - last > _REFILL_SPAN * product.refill_days * DAY:
                record[1] += 1.0
                record[2] = last  # this purchase's lapse is counted

    def _rebuy(self, state: CustomerState, product: Product, t: float) -> None:
        assert product.refill_days
        span = _REFILL_SPAN * product.refill_days * DAY
        last = state.consumables.get(product.sku)
        record = state.refills.setdefault(product.sku, [0.0, 0.0, 0.0])
        if last is not None and t - last <= span and record[2] < last:
            record[0] += 1.0
            record[2] = last
            if self.learning:  # the episode the last purchase started is answered
                self.change("episode", str(int((last + span) // DAY)), 1)
        if self.learning:
            self.change("episode", str(int((t + span) // DAY)), 0)

    def _watch(self, state: CustomerState, base: Product, t: float, bought: set[str]) -> None:
        for relation, sku in base.related:
            if relation in FOLLOW_RELATIONS and sku not in bought:
                seen = 1 if state.viewed.get(sku, 0) > 0 else 0
                state.watch.append([sku, relation, t, seen, base.sku])
                if self.learning:
                    self.change("watch", f"{relation}|{seen}", str(int(t // DAY)))
        del state.watch[:-_MAX_WATCH]

    def _settle(self, state: CustomerState, t: float, bought: set[str], offered: set[str]) -> None:
        horizon_s = self.horizon * DAY
        kept = []
        for entry in state.watch:
            sku, relation, start, seen = entry[:4]
            if t > start + horizon_s:
                continue  # its exposure was counted by the day it started
            if sku in bought:
                if self.learning:  # no longer exposed: its days so far move out of the start
                    # (an offer's sale is no purchase of their own)
                    self.change(
                        "settle",
                        f"{relation}|{seen}",
                        str(int(start // DAY)),
                        (t - start) / DAY,
                        0.0 if sku in offered else 1.0,
                    )
            else:
                kept.append(entry)  # still watched
        state.watch = kept

    # -- reading ------------------------------------------------------------------------------
    def follow_on(self, relation: str, seen: bool, t: float) -> float:
        """P(an item of `relation` is bought on their own within the horizon, once its base
        is owned): a Gamma-Poisson hazard from the counts, starting at the policy's prior
        (read at the start of each hour of event time, again when the counts move)."""
        hour = int(t // 3600.0)
        key = (relation, seen, hour, self.counts.version)
        found = self._follow.get(key)
        if found is None:
            if len(self._follow) > 64:
                self._follow.clear()
            # read at the hour's start: the same whatever was asked before (a restored
            # engine decides as one that never stopped)
            found = self._follow[key] = self._follow_on(relation, seen, hour * 3600.0)
        return found

    def _follow_on(self, relation: str, seen: bool, t: float) -> float:
        prior = self.follow_prior.get(relation, 0.0)
        if seen:
            prior = min(2.5 * prior, 0.9)
        rate0 = -math.log(1.0 - prior) / self.horizon  # per day
        events, days = self.counts.exposure(f"{relation}|{int(seen)}", t, self.horizon)
        prior_days = self.strength * self.horizon
        rate = (rate0 * prior_days + events) / (prior_days + max(days, 0.0))
        return 1.0 - math.exp(-rate * self.horizon)

    def refill(self, state: CustomerState, sku: str, t: float) -> float:
        """P(the customer buys this consumable again this cycle on their own)."""
        at = (int(t // 3600.0), self.counts.version)
        if self._refill_at != at:
            decided, rebought = self.counts.refill_decided(at[0] * 3600.0)
            k = self.strength
            self._refill_base = (self.refill_prior * k + rebought) / (k + decided)
            self._refill_at = at
        base = self._refill_base
        mine = state.refills.get(sku, (0.0, 0.0, 0.0))
        return (base * 2.0 + mine[0]) / (2.0 + mine[0] + mine[1])

    def base_bought(self, seen_views: int) -> float:
        """P(an item looked at is bought): everyone's rate, higher on repeat views."""
        viewed, bought = self.counts.views
        k = self.strength
        rate = (self.view_prior * k + bought) / (k + viewed)
        return min(rate * (1.0 + 0.5 * max(seen_views - 1, 0)), 0.9)
