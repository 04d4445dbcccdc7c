"""The simulated shoppers: traits and plans of their own, drawn from the seed alone.

Every policy meets the same shoppers with the same plans and the same random draws (common
random numbers), so differences between policies come from what their actions did, not from
luck. A plan is a list of visits; each visit's draws are fixed in advance: what is browsed
(including the related items the shopper is curious about), what goes in the cart, whether
the order goes through (`u_order`, against a chance the policy's actions can raise or lower),
whether a tired shopper skips the visit, and what would be returned.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from app.catalog import RELATIONS, Catalog, Product
from app.simulate.truth import item_type
from app.simulate.world import PersonaTruth, WorldSpec

_ZONES = ((60, 0.55), (0, 0.25), (-300, 0.20))  # UTC offsets of shoppers, in minutes
DAY_S = 86400.0


@dataclass(slots=True)
class Session:
    t: float  # start, epoch seconds
    index: int
    browse: list[str]  # SKUs viewed, in order
    cart: list[str]  # SKUs put in the cart (empty: a browsing visit)
    u_order: float  # the order goes through when u_order < the visit's chance
    u_returns: list[float]  # per cart item, against its return chance
    u_skip: float  # a tired shopper skips the visit when u_skip < the chance
    reads_reviews: list[bool]
    policy_pages: list[str]
    coupon: bool
    price_sort: bool  # searched sorted by price, cheapest first
    origin: str = "own"  # own | newsletter (happens only while subscribed) | refill
    refill: str | None = None  # a consumable this visit rebuys


@dataclass(slots=True)
class Customer:
    id: str
    persona: str
    zone_minutes: int
    price_sensitivity: float
    return_propensity: float
    premium_affinity: float
    engagement: float
    fatigue: float
    distractibility: float
    discount_learning: float
    receptivity: float
    buy_rate: float
    cart_rate: float
    consents: frozenset[str]  # outbound channels the shopper opted into
    seed: int
    sessions: list[Session] = field(default_factory=list)
    refill_sku: str | None = None  # the consumable they buy and refill
    refill_cycles: int = 0  # refills they will buy on their own

    @property
    def tz(self) -> timezone:
        return timezone(timedelta(minutes=self.zone_minutes))


def _trait(rng: random.Random, span: tuple[float, float]) -> float:
    return rng.uniform(span[0], span[1])


def shelf(catalog: Catalog) -> tuple[list[Product], list[Product]]:
    """Products shoppers look for themselves: cores and accessories; and consumables."""
    products = sorted(catalog.products.values(), key=lambda p: p.sku)
    browsable = [p for p in products if p.kind in ("core", "premium", "accessory")]
    consumables = [p for p in products if p.kind == "consumable" and p.refill_days]
    return browsable, consumables


def populate(world: WorldSpec, catalog: Catalog, seed: int, prefix: str = "sim") -> list[Customer]:
    """The world's shoppers and their plans (the same for the same world, catalog, seed)."""
    start = datetime.fromisoformat(world.start).timestamp()
    browsable, consumables = shelf(catalog)
    if not browsable:
        raise ValueError("the catalog has no core, premium or accessory products to browse")
    names = sorted(world.personas)
    weights = [world.personas[n].share for n in names]
    customers = []
    for index in range(world.customers):
        rng = random.Random(f"{seed}:customer:{index}")
        persona_name = rng.choices(names, weights)[0]
        persona = world.personas[persona_name]
        zone = rng.choices([z for z, _ in _ZONES], [w for _, w in _ZONES])[0]
        consents = frozenset(
            c for c, truth in sorted(world.channels.items()) if rng.random() < truth.consent
        )
        customer = Customer(
            id=f"{prefix}{index:06d}",
            persona=persona_name,
            zone_minutes=zone,
            price_sensitivity=_trait(rng, persona.price_sensitivity),
            return_propensity=_trait(rng, persona.return_propensity),
            premium_affinity=_trait(rng, persona.premium_affinity),
            engagement=_trait(rng, persona.engagement),
            fatigue=_trait(rng, persona.fatigue),
            distractibility=_trait(rng, persona.distractibility),
            discount_learning=_trait(rng, persona.discount_learning),
            receptivity=_trait(rng, persona.receptivity),
            buy_rate=persona.buy_rate,
            cart_rate=persona.cart_rate,
            consents=consents,
            seed=seed,
        )
        arrival = start + rng.uniform(0, world.arrival_days) * DAY_S
        _plan(rng, customer, persona, world, catalog, arrival, start, browsable, consumables)
        customers.append(customer)
    return customers


def _plan(
    rng: random.Random,
    customer: Customer,
    persona: PersonaTruth,
    world: WorldSpec,
    catalog: Catalog,
    arrival: float,
    start: float,
    browsable: list[Product],
    consumables: list[Product],
) -> None:
    end = start + world.days * DAY_S
    count = rng.randint(*persona.sessions)
    times = [(arrival, "own")]
    times += [(rng.uniform(arrival, end), "own") for _ in range(count - 1)]
    if "email" in customer.consents:
        times += [
            (rng.uniform(arrival, end), "newsletter")
            for _ in range(rng.randint(*persona.newsletter_visits))
        ]
    times.sort()
    sessions = [
        _visit(rng, customer, persona, world, catalog, t, origin, browsable) for t, origin in times
    ]
    refill = rng.choice(consumables) if persona.consumer and consumables else None
    if refill is not None and refill.refill_days:
        customer.refill_sku = refill.sku
        t = arrival + rng.uniform(0.0, 2.0) * DAY_S
        while t < end:
            sessions.append(_refill_visit(rng, t, refill.sku))
            customer.refill_cycles += 1
            keep = persona.refill_keep if persona.refill_keep is not None else world.refill_keep
            if rng.random() > keep:
                break
            t += refill.refill_days * DAY_S * rng.uniform(0.85, 1.15)
    sessions.sort(key=lambda s: s.t)
    for i, session in enumerate(sessions):
        session.index = i
    customer.sessions = sessions


def _visit(
    rng: random.Random,
    customer: Customer,
    persona: PersonaTruth,
    world: WorldSpec,
    catalog: Catalog,
    t: float,
    origin: str,
    browsable: list[Product],
) -> Session:
    focus = rng.sample(browsable, k=min(3, len(browsable)))
    depth = rng.randint(1, len(focus))
    browse = [p.sku for p in focus[:depth]]
    cart: list[str] = []
    if rng.random() < persona.cart_rate:
        cart = browse[: rng.choice((1, 1, 2))]
    curious = []  # related items the shopper looks at: the types that want them, more often
    for sku in browse:
        for relation in RELATIONS:
            for other in catalog.related(sku, relation):
                kind = item_type(world, customer, other, relation)
                if rng.random() < world.sees_related.get(kind, 0.0) and other not in browse:
                    curious.append(other)
    browse += list(dict.fromkeys(curious))[:3]
    rp = customer.return_propensity
    return Session(
        t=t,
        index=0,
        browse=browse,
        cart=cart,
        u_order=rng.random(),
        u_returns=[rng.random() for _ in range(3)],
        u_skip=rng.random(),
        reads_reviews=[rng.random() < 0.35 for _ in browse],
        policy_pages=[
            page
            for page, chance in (
                ("size_guide", 0.05 + 0.7 * rp),
                ("returns_policy", 0.05 + 0.5 * rp),
                ("faq", 0.1),
            )
            if rng.random() < chance
        ],
        coupon=persona.coupon_hunter and rng.random() < 0.7,
        price_sort=rng.random() < 0.7 * customer.price_sensitivity,
        origin=origin,
    )


def _refill_visit(rng: random.Random, t: float, sku: str) -> Session:
    return Session(
        t=t,
        index=0,
        browse=[sku],
        cart=[sku],
        u_order=rng.random(),
        u_returns=[rng.random() for _ in range(3)],
        u_skip=rng.random(),
        reads_reviews=[False],
        policy_pages=[],
        coupon=False,
        price_sort=False,
        origin="refill",
        refill=sku,
    )
