"""The ceiling: a policy that knows the world's truth and acts greedily on it.

At the moments the engine decides at (product views, cart adds, checkouts, orders), the
ceiling scores every candidate it could make (fit guidance on the item; every related item on
every channel of the moment, in every frame the policy allows and at every intensity; for a
consumable bought, a subscription, or a refill reminder when it runs low) by its expected
incremental profit under the world's own chances (app/simulate/truth.py):

    P(noticed) x sum over the shopper's types for the item of
        P(type) x [P(accept | type) x (margin after returns - what they would have bought anyway)
                   - P(derailing the purchase under way | type) x its margin]
    - channel spend - tiredness x (visits it makes them skip) - P(unsubscribe) x (newsletter
      visits lost) - discount habit x (full-price orders it costs)

and makes the best one when that is positive. Three of them:

    ceiling   knows each shopper's traits, type for each item, and plans (their own visits,
              refills, what they will buy anyway): the most a greedy decision-maker can earn
    traits    knows each shopper's traits and plans, but not their type for an item: only the
              chance of each type their traits give, updated by whether they have looked at
              the item as if every look came from wanting it (the world's `sees_related`;
              shoppers also look at items at random, so a look is weaker evidence than this
              takes it for). Roughly what there is to earn from what a shopper is and does,
              short of reading their mind about each item; greedy too, so not a bound
    average   knows the world's response model exactly, but only for the average shopper: no
              individual traits, types or plans (what a perfect model without telling shoppers
              apart could earn)

Neither is an upper bound in the strict sense (greedy is not optimal over time), but a good
decision-maker should earn most of what the ceiling earns; `share of the ceiling` is measured
against it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from app.catalog import RELATIONS, Catalog, Product
from app.decode import validate_object
from app.policy import Policy
from app.simulate import truth
from app.simulate.baselines import _Baseline
from app.simulate.population import DAY_S, Customer, Session
from app.simulate.truth import LN2, MESSAGES, ONSITE
from schemas import Action, Envelope

if TYPE_CHECKING:
    from app.simulate.loop import Simulation, _Shopper

_INTENSITIES = ("low", "medium", "high")
_REFILL_CHANNELS = ("email", "sms")


@dataclass(slots=True)
class _Moment:
    """What a decision moment's candidates share."""

    shopper: _Shopper
    c: Customer  # the traits the policy knows (true, or the average shopper's)
    t: float
    moment: str
    on_site: bool
    cart: list[str]
    order_value: float  # expected margin of the purchase under way (0: none)
    tire_value: float  # profit lost per unit of tiredness added now
    habit_value: float  # profit lost per unit of discount habit added now
    newsletter_value: float  # profit lost with an email unsubscribe
    memo: dict[tuple[Any, ...], Any] = field(default_factory=dict)  # within the moment


# (relation, the item offered, channel, frame, intensity, delay in seconds)
Option = tuple[str, Product, str, str, str, float]
KNOWS = ("ceiling", "traits", "average")  # the references, most knowing first


class Oracle(_Baseline):
    """Greedy on the world's truth; what it knows of each shopper is `knows` (KNOWS)."""

    def __init__(self, catalog: Catalog, policy: Policy, seed: int, knows: str = "ceiling") -> None:
        super().__init__(catalog, policy, seed)
        if knows not in KNOWS:
            raise ValueError(f"knows: one of {', '.join(KNOWS)}, not {knows!r}")
        self.name = knows
        self.knows = knows != "average"  # the shopper's own traits and plans
        self.knows_types = knows == "ceiling"  # and their type for every item
        self.looked: dict[str, set[str]] = {}  # customer -> items they looked at (traits)
        self._last: tuple[str, _Moment | None] = ("", None)  # the moment valued last
        self.sim: Simulation | None = None
        self.average: Customer | None = None

    def bind(self, sim: Simulation) -> None:
        self.sim = sim
        self.average = _average_shopper(sim)

    # -- moments ------------------------------------------------------------------------------
    def process(self, event: dict[str, Any]) -> list[Action]:
        e = validate_object(event)
        valued = self.value_options(e)
        if valued is None:
            return []
        moment, options = valued
        best: tuple[float, Option] | None = None
        for option, value in options.items():
            if value > 0.0 and (best is None or value > best[0]):
                best = (value, option)
        if best is None:
            return []
        relation, product, channel, frame, intensity, delay = best[1]
        return [
            self.action(e, moment, channel, relation, product.sku, frame, intensity, delay, best[0])
        ]

    def value_options(self, e: Envelope) -> tuple[str, dict[Option, float]] | None:
        """The decision moment `e` is (None: none) and what every candidate there is worth by
        what this reference knows (benchmarks/regret.py values another policy's choices by it;
        call it before the simulation has taken `e` in)."""
        data: Any = e
        if e.type == "page_view" and data.page == "pdp" and data.sku:
            if self.name == "traits":
                self.looked.setdefault(e.customer_id, set()).add(data.sku)
            return "browse", self._values(e, "browse", [data.sku])
        if e.type == "add_to_cart":
            return "cart", self._values(e, "cart", [data.sku])
        if e.type == "checkout_start":
            return "checkout", self._values(e, "checkout", [])
        if e.type == "order_placed":
            skus = [i.sku for i in sorted(data.items, key=lambda i: -i.price)]
            return "post_purchase", self._values(e, "post_purchase", list(dict.fromkeys(skus)))
        return None

    def _values(self, event: Envelope, moment: str, focus: list[str]) -> dict[Option, float]:
        sim = self.sim
        assert sim is not None and self.average is not None
        shopper = sim.shoppers[event.customer_id]
        t = event.ts.timestamp()
        m = self._moment(sim, shopper, t, moment)
        self._last = (event.event_id, m)
        if moment in ("cart", "checkout"):
            focus = list(dict.fromkeys([*focus, *m.cart]))
        return {option: self._value(sim, m, *option) for option in self._options(sim, m, focus)}

    def value_of(self, e: Envelope, option: Option) -> float:
        """What `option` is worth at the moment `value_options` last valued, `e`'s: one its
        candidates may not include (an offer of what is bought together, or in a frame the
        reference does not try)."""
        sim = self.sim
        event_id, m = self._last
        assert sim is not None and m is not None and event_id == e.event_id, "value_options first"
        return self._value(sim, m, *option)

    def _moment(self, sim: Simulation, shopper: _Shopper, t: float, moment: str) -> _Moment:
        visit = shopper.visit
        on_site = sim.on_site(shopper, t)
        cart = list(visit.cart) if visit is not None and on_site and not visit.ordered else []
        c = shopper.customer if self.knows else self._as_average(shopper)
        sessions = self._future(sim, shopper, t)
        order_value = 0.0
        if moment in ("browse", "cart", "checkout") and visit is not None and visit.session:
            if self.knows or moment != "browse":
                margin = sum(self._net(sim, c, s, 1.0) for s in visit.cart)
                order_value = margin * self._order_chance(sim, shopper, c, visit.session, t)
            else:  # the average shopper's chance of a cart in a visit
                mean = self._mean_visit_value(sim, c)
                order_value = mean if not visit.ordered else 0.0
        decay = sim.world.tire_half_life_days * DAY_S
        habit_decay = sim.world.habit_half_life_days * DAY_S
        tire = habit = newsletter = 0.0
        skip = sim.world.skip_per_tire * c.fatigue
        for when, value, origin, coupon in sessions:
            tire += skip * math.exp(-LN2 * (when - t) / decay) * value
            if not coupon and origin != "refill":
                habit += math.exp(-LN2 * (when - t) / habit_decay) * value
            if origin == "newsletter":
                newsletter += value
        return _Moment(shopper, c, t, moment, on_site, cart, order_value, tire, habit, newsletter)

    # -- candidates ---------------------------------------------------------------------------
    def _options(self, sim: Simulation, m: _Moment, focus: list[str]) -> list[Option]:
        shopper = m.shopper
        channels = [
            ch
            for ch in self.policy.moments[m.moment].channels
            if ch not in shopper.unsubscribed
            and (ch not in MESSAGES or ch in shopper.customer.consents)
            and (ch not in ONSITE or m.on_site)
        ]
        if m.moment == "browse" and "paid_retargeting" not in shopper.unsubscribed:
            channels.append("paid_retargeting")
        out: list[Option] = []
        seen: set[tuple[str, str]] = set()
        for sku in focus:
            base = self.catalog.get(sku)
            if base is None:
                continue
            if m.moment != "post_purchase" and sku == focus[0]:
                for frame in self.policy.relation_frames["self"]:
                    for ch in channels:
                        if ch in ONSITE:
                            out.append(("self", base, ch, frame, "low", 0.0))
            for relation in RELATIONS:
                for other in self.catalog.related(sku, relation):
                    product = self.catalog.get(other)
                    if product is None or (other, relation) in seen or other in m.cart:
                        continue
                    seen.add((other, relation))
                    for frame in self.policy.relation_frames.get(relation, []):
                        for ch in channels:
                            for intensity in _INTENSITIES:
                                out.append((relation, product, ch, frame, intensity, 0.0))
            if m.moment == "post_purchase" and base.kind == "consumable" and base.refill_days:
                delay = max(base.refill_days * 0.8 - 4.0, 1.0) * DAY_S
                for ch in _REFILL_CHANNELS:
                    if ch in shopper.customer.consents and ch not in shopper.unsubscribed:
                        for frame in self.policy.relation_frames["refill"]:
                            out.append(("refill", base, ch, frame, "low", delay))
        return out

    # -- value --------------------------------------------------------------------------------
    def _value(
        self,
        sim: Simulation,
        m: _Moment,
        relation: str,
        product: Product,
        channel: str,
        frame: str,
        intensity: str,
        delay: float,
    ) -> float:
        world, c, shopper = sim.world, m.c, m.shopper
        at = m.t + delay + self.policy.channels[channel].delay_hours * 3600.0
        tired = shopper.tire.at(at)
        seen = truth.seen_chance(world, c, channel) if channel not in ONSITE else 1.0
        cost = world.channels[channel].cost
        if relation == "self":
            return (
                self._assist_value(sim, m, product, frame)
                - cost
                - m.tire_value * (truth.tire_added(world, channel, intensity, "lost"))
            )
        on_site = channel in ONSITE and m.on_site
        has_base = sim.has_base(shopper, product.sku, relation) or any(
            b in m.cart for b in sim.bases.get((product.sku, relation), ())
        )
        total = 0.0
        key = ("types", product.sku, relation)
        types = m.memo.get(key)
        if types is None:
            types = m.memo[key] = self._types(sim, m, product.sku, relation)
        shift = m.memo.get(("shift", at))
        if shift is None:
            shift = m.memo[("shift", at)] = sim.shift(at)
        for kind, share in types.items():
            if share <= 0.0:
                continue
            accept = truth.accept_chance(
                world,
                c,
                kind,
                product,
                relation,
                channel,
                frame,
                intensity,
                on_site,
                has_base,
                tired,
                shift,
            )
            if product.sku in shopper.owned and product.kind not in ("consumable", "subscription"):
                accept *= 0.1
            gain_key = ("gain", product.sku, relation, frame, intensity, kind, at)
            gain = m.memo.get(gain_key)
            if gain is None:
                gain = m.memo[gain_key] = self._gain(
                    sim, m, product, relation, frame, intensity, kind, at
                )
            value = seen * accept * gain
            if on_site and m.order_value:
                value -= truth.abandon_chance(world, c, m.moment, intensity, kind) * m.order_value
            value -= m.tire_value * truth.tire_added(world, channel, intensity, kind)
            if channel in MESSAGES:
                unsub = truth.unsubscribe_chance(world, c, channel, intensity, tired, kind)
                value -= unsub * (m.newsletter_value if channel == "email" else 0.0)
            total += share * value
        if frame == "cost_efficiency":
            total -= seen * c.discount_learning * m.habit_value
        return total - cost

    def _gain(
        self,
        sim: Simulation,
        m: _Moment,
        product: Product,
        relation: str,
        frame: str,
        intensity: str,
        kind: str,
        at: float,
    ) -> float:
        """What the store earns when the offer is taken up, net of returns and of what the
        shopper would have bought anyway."""
        world, c = sim.world, m.c
        discount = world.discount if frame == "cost_efficiency" else 0.0
        if relation == "subscription":
            return self._subscription_gain(sim, m, product, at)
        regret = world.regret[intensity]
        gain = self._net(sim, c, product.sku, regret, discount)
        if relation == "upgrade" and any(
            b in m.cart for b in sim.bases.get((product.sku, "upgrade"), ())
        ):
            base = next(b for b in m.cart if b in sim.bases.get((product.sku, "upgrade"), ()))
            chance = m.order_value > 0 and self._visit_chance(sim, m)
            return (gain - self._net(sim, c, base, 1.0)) * (chance or 0.0)
        if kind == "sure":
            if relation == "refill":
                gain -= 0.95 * self._net(sim, c, product.sku, 1.0)
            else:  # they buy it on their own once they have the item it goes with
                low, high = world.sure_days
                within = min(max((sim.end - at) / DAY_S - low, 0.0) / (high - low), 1.0)
                anyway = within * self._base_chance(sim, m, product.sku, relation)
                gain -= anyway * self._net(sim, c, product.sku, 1.0)
        return gain

    def _base_chance(self, sim: Simulation, m: _Moment, sku: str, relation: str) -> float:
        """The chance the shopper comes to own an item `sku` is `relation` of."""
        bases = sim.bases.get((sku, relation), set())
        if any(b in m.shopper.owned for b in bases):
            return 1.0
        if any(b in m.cart for b in bases):
            return self._visit_chance(sim, m)
        if not self.knows:
            return m.c.cart_rate * m.c.buy_rate * 0.5
        chance, miss = 0.0, 1.0
        for s in m.shopper.customer.sessions:
            if s.t >= m.t - 3600.0 and any(b in s.cart for b in bases):
                chance += miss * m.c.buy_rate
                miss *= 1.0 - m.c.buy_rate
        return min(chance, 1.0)

    def _subscription_gain(self, sim: Simulation, m: _Moment, product: Product, at: float) -> float:
        world = sim.world
        cycle = (product.refill_days or 30) * DAY_S
        keep = world.subscription_keep
        sub_margin = self._net(sim, m.c, product.sku, 1.0)
        gain, alive, when = 0.0, 1.0, at + 60.0
        while when < sim.end:
            alive *= keep
            gain += alive * sub_margin
            when += cycle
        base = sim.subscription_of.get(product.sku)
        if base is None:
            return gain
        base_net = 0.95 * self._net(sim, m.c, base, 1.0)
        if self.knows:
            replaced = [s.t for s in m.shopper.customer.sessions if s.refill == base and s.t > at]
        else:  # the average consumer refills with the world's chance per cycle
            replaced, when, chance = [], at + cycle, world.refill_keep
            while when < sim.end and chance > 0.01:
                replaced.append(when)
                when += cycle
        for i, when in enumerate(sorted(replaced)):
            kept = keep ** (1 + int((when - at) / cycle))
            gain -= kept * base_net * (1.0 if self.knows else world.refill_keep ** (i + 1))
        return gain

    def _assist_value(self, sim: Simulation, m: _Moment, product: Product, frame: str) -> float:
        world, c = sim.world, m.c
        engage = truth.engage_chance(world, c, frame)
        visit = m.shopper.visit
        lifted = visit.lift if visit is not None else 0.0
        value = max(world.assist_lift - lifted, 0.0) * m.order_value  # lifts once per visit
        if frame == "risk_reduction" and product.sku in m.cart:
            chance = truth.return_chance(world, c, product.kind, 1.0, False)
            saved = chance * world.assist_return_cut * (product.margin + world.handling_cost)
            value += saved * self._visit_chance(sim, m)
        return engage * value

    # -- what the policy knows of the shopper -------------------------------------------------
    def _types(self, sim: Simulation, m: _Moment, sku: str, relation: str) -> dict[str, float]:
        if self.knows_types:
            return {sim.type_of(m.shopper, sku, relation, m.t): 1.0}
        if relation == "refill":
            share = sim.world.type_shares("refill").persuadable * m.c.receptivity
            sure = sim.world.refill_keep
            if self.knows:  # their plans: whether they refill on their own
                sure = 1.0 if sim.type_of(m.shopper, sku, relation, m.t) == "sure" else 0.0
            return {
                "sure": sure,
                "persuadable": (1 - sure) * share,
                "lost": (1 - sure) * (1 - share),
            }
        shares = truth.type_shares(sim.world, m.c, relation, sku)
        if not self.knows:
            return shares
        looked = sku in self.looked.get(m.c.id, ())
        return truth.shares_given_look(shares, sim.world.sees_related, looked)

    def _as_average(self, shopper: _Shopper) -> Customer:
        assert self.average is not None
        own = shopper.customer
        return replace(
            self.average,
            id=own.id,
            consents=own.consents,
            refill_sku=own.refill_sku if own.refill_sku in shopper.bought_at else None,
        )

    def _future(
        self, sim: Simulation, shopper: _Shopper, t: float
    ) -> list[tuple[float, float, str, bool]]:
        """(time, expected margin, origin, coupon) of the shopper's visits to come."""
        c = shopper.customer
        if self.knows:
            return [
                (s.t, self._session_value(sim, shopper, c, s), s.origin, s.coupon)
                for s in c.sessions
                if s.t > t and s.origin != "refill"
            ]
        assert self.average is not None
        per_day, value = self._average_rate(sim)
        remaining = max(sim.end - t, 0.0) / DAY_S
        count = int(per_day * remaining)
        step = remaining / (count + 1) if count else 0.0
        return [(t + (i + 1) * step * DAY_S, value, "own", False) for i in range(count)]

    def _session_value(self, sim: Simulation, shopper: _Shopper, c: Customer, s: Session) -> float:
        cart = [x for x in s.cart if x not in shopper.owned]
        return sum(self._net(sim, c, x, 1.0) for x in cart) * c.buy_rate

    def _average_rate(self, sim: Simulation) -> tuple[float, float]:
        cached = getattr(self, "_rate", None)
        if cached is not None:
            return cached  # type: ignore[no-any-return]
        sessions = [s for c in (x.customer for x in sim.shoppers.values()) for s in c.sessions]
        own = [s for s in sessions if s.origin != "refill"]
        per_day = len(own) / max(len(sim.shoppers), 1) / sim.world.days
        assert self.average is not None
        value = (
            sum(sum(self._net(sim, self.average, x, 1.0) for x in s.cart) for s in own)
            / max(len(own), 1)
            * self.average.buy_rate
        )
        self._rate = (per_day, value)
        return self._rate

    def _mean_visit_value(self, sim: Simulation, c: Customer) -> float:
        return self._average_rate(sim)[1]

    def _order_chance(
        self, sim: Simulation, shopper: _Shopper, c: Customer, session: Session, t: float
    ) -> float:
        if session.refill:
            return 0.95
        chance = c.buy_rate
        if not session.coupon:
            chance *= truth.habit_factor(sim.world, shopper.habit.at(t))
        lift = shopper.visit.lift if shopper.visit is not None else 0.0
        return min(chance * (1.0 + lift), 0.99)

    def _visit_chance(self, sim: Simulation, m: _Moment) -> float:
        visit = m.shopper.visit
        if visit is None or visit.session is None or visit.ordered:
            return 1.0 if visit is not None and visit.ordered else 0.0
        return self._order_chance(sim, m.shopper, m.c, visit.session, m.t)

    def _net(
        self, sim: Simulation, c: Customer, sku: str, regret: float, discount: float = 0.0
    ) -> float:
        """Margin of one unit after the expected return."""
        product = self.catalog.get(sku)
        if product is None:
            return 0.0
        margin = product.price * (1.0 - discount) - product.unit_cost
        chance = truth.return_chance(sim.world, c, product.kind, regret, False)
        return margin - chance * (margin + sim.world.handling_cost)


def _average_shopper(sim: Simulation) -> Customer:
    """The population's mean traits, as one shopper."""
    shoppers = [s.customer for s in sim.shoppers.values()]
    n = max(len(shoppers), 1)

    def mean(name: str) -> float:
        return float(sum(getattr(c, name) for c in shoppers)) / n

    first = shoppers[0]
    return replace(
        first,
        id="average",
        persona="average",
        price_sensitivity=mean("price_sensitivity"),
        return_propensity=mean("return_propensity"),
        premium_affinity=mean("premium_affinity"),
        engagement=mean("engagement"),
        fatigue=mean("fatigue"),
        distractibility=mean("distractibility"),
        discount_learning=mean("discount_learning"),
        receptivity=mean("receptivity"),
        buy_rate=mean("buy_rate"),
        cart_rate=mean("cart_rate"),
        sessions=[],
        refill_sku=None,
    )
