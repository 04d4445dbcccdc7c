"""The simulated customers: traits and organic plans, drawn from the seed alone.

Every policy meets the same customers with the same plans and the same random draws (common
random numbers), so differences between policies come from what their actions did, not from
luck. A plan is a list of sessions; each session's draws are fixed in advance: what is browsed,
what goes in the cart, whether the order goes through (`u_order`, against a chance the
policy's actions can raise or lower), what would be returned, and what the customer would buy
later on their own.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from app.catalog import Catalog, Product
from app.simulate.world import PersonaTruth, WorldSpec

_ZONES = ((60, 0.55), (0, 0.25), (-300, 0.20))  # UTC offsets of customers, in minutes
DAY_S = 86400.0


@dataclass(slots=True)
class Session:
    t: float  # start, epoch seconds
    index: int
    browse: list[str]  # SKUs viewed, in order
    cart: list[str]  # SKUs put in the cart (empty: a browsing session)
    u_order: float  # the order goes through when u_order < the session's chance
    u_returns: list[float]  # per cart item, against its return chance
    reads_reviews: list[bool]
    policy_pages: list[str]
    coupon: bool
    u_later: float  # a later purchase of an accessory of what was bought, on their own
    later_days: float
    refill: str | None = None  # a consumable this session rebuys (repeat buyers)


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
    buy_rate: float
    sessions: list[Session] = field(default_factory=list)

    @property
    def tz(self) -> timezone:
        return timezone(timedelta(minutes=self.zone_minutes))


def _trait(rng: random.Random, span: tuple[float, float]) -> float:
    return rng.uniform(span[0], span[1])


def _shelf(catalog: Catalog) -> tuple[list[Product], list[Product]]:
    """Products customers look for themselves: cores and accessories; and consumables."""
    products = sorted(catalog.products.values(), key=lambda p: p.sku)
    shelf = [p for p in products if p.kind in ("core", "premium", "accessory")]
    consumables = [p for p in products if p.kind == "consumable" and p.refill_days]
    return shelf, consumables


def populate(world: WorldSpec, catalog: Catalog, seed: int, prefix: str = "sim") -> list[Customer]:
    """The world's customers and their plans (the same for the same world, catalog, seed)."""
    start = datetime.fromisoformat(world.start).timestamp()
    shelf, consumables = _shelf(catalog)
    if not shelf:
        raise ValueError("the catalog has no core, premium or accessory products to browse")
    names = sorted(world.personas)
    weights = [world.personas[n].share for n in names]
    customers = []
    for index in range(world.customers):
        rng = random.Random(f"{seed}:customer:{index}")
        persona_name = rng.choices(names, weights)[0]
        persona = world.personas[persona_name]
        zone = rng.choices([z for z, _ in _ZONES], [w for _, w in _ZONES])[0]
        customer = Customer(
            id=f"{prefix}{index:06d}",
            persona=persona_name,
            zone_minutes=zone,
            price_sensitivity=_trait(rng, persona.price_sensitivity),
            return_propensity=_trait(rng, persona.return_propensity),
            premium_affinity=_trait(rng, persona.premium_affinity),
            engagement=_trait(rng, persona.engagement),
            fatigue=_trait(rng, persona.fatigue),
            buy_rate=persona.buy_rate,
        )
        arrival = start + rng.uniform(0, world.arrival_days) * DAY_S
        customer.sessions = _plan(rng, persona, world, arrival, start, shelf, consumables)
        customers.append(customer)
    return customers


def _plan(
    rng: random.Random,
    persona: PersonaTruth,
    world: WorldSpec,
    arrival: float,
    start: float,
    shelf: list[Product],
    consumables: list[Product],
) -> list[Session]:
    end = start + world.days * DAY_S
    count = rng.randint(*persona.sessions)
    times = sorted([arrival, *(rng.uniform(arrival, end) for _ in range(count - 1))])
    refill = rng.choice(consumables) if persona.consumer and consumables else None
    sessions = []
    for i, t in enumerate(times):
        focus = rng.sample(shelf, k=min(3, len(shelf)))
        depth = rng.randint(1, len(focus))
        browse = [p.sku for p in focus[:depth]]
        cart: list[str] = []
        if rng.random() < persona.cart_rate:
            cart = browse[: rng.choice((1, 1, 2))]
        session = Session(
            t=t,
            index=i,
            browse=browse,
            cart=cart,
            u_order=rng.random(),
            u_returns=[rng.random() for _ in range(3)],
            reads_reviews=[rng.random() < 0.4 for _ in browse],
            policy_pages=[
                page
                for page in ("size_guide", "returns_policy", "faq")
                if rng.random() < 0.15 + 0.5 * persona.return_propensity[0]
            ],
            coupon=persona.coupon_hunter and rng.random() < 0.7,
            u_later=rng.random(),
            later_days=rng.uniform(3, 20),
        )
        sessions.append(session)
    if refill is not None and refill.refill_days:
        t = arrival + rng.uniform(0.0, 2.0) * DAY_S
        while t < end:
            sessions.append(
                Session(
                    t=t,
                    index=len(sessions),
                    browse=[refill.sku],
                    cart=[refill.sku],
                    u_order=rng.random(),
                    u_returns=[rng.random() for _ in range(3)],
                    reads_reviews=[False],
                    policy_pages=[],
                    coupon=False,
                    u_later=1.0,
                    later_days=0.0,
                    refill=refill.sku,
                )
            )
            if rng.random() > world.refill_keep:
                break
            t += refill.refill_days * DAY_S * rng.uniform(0.85, 1.15)
        sessions.sort(key=lambda s: s.t)
        for i, session in enumerate(sessions):
            session.index = i
    return sessions
