"""The policies tact is measured against, on the same customers and draws.

    never    no actions at all: what the store earns on its own (the zero of incremental
             profit)
    always   at every moment, the item most related to what the customer looks at (the
             catalog's first relation, else what is most often bought with it) on every
             channel, at medium intensity: what a typical "recommend everywhere" tool does
    widget   a recommendation widget: the first accessory of the item, onsite, on every
             product view and cart add
    rules    a hand-written heuristic a marketer might start with: after an order, the first
             accessory of the most expensive item on the order page, and a subscription by
             email for a consumable; nothing while the customer is shopping
    random   at every moment, a coin decides whether to offer; if so a random related item
             (or fit guidance on the item itself), channel, frame and intensity

They decide at the same moments as the engine (product views, cart adds, checkouts, orders),
respect consent and unsubscribes as the engine does (they see the same events), and write
Actions the loop delivers the same way.
"""

from __future__ import annotations

from datetime import timedelta
from hashlib import blake2b
from typing import Any

from app.actions import action_id, build
from app.catalog import RELATIONS, Catalog
from app.context import RELATION_PLAY
from app.decode import validate_object
from app.models import Affinity
from app.policy import Policy
from schemas import Action, Envelope

_SCALE = float(2**64)
_INTENSITIES = ("low", "medium", "high")


class _Baseline:
    """Moments and Action building shared by the baselines."""

    name = "baseline"

    def __init__(self, catalog: Catalog, policy: Policy, seed: int) -> None:
        self.catalog = catalog
        self.policy = policy
        self.seed = seed
        self.carts: dict[str, list[str]] = {}
        self.affinity = Affinity()
        self.reachable: dict[str, set[str]] = {}  # customer -> messaging channels allowed

    def process(self, event: dict[str, Any]) -> list[Action]:
        e = validate_object(event)
        cid, kind = e.customer_id, e.type
        cart = self.carts.setdefault(cid, [])
        data: Any = e
        if kind == "consent":
            allowed = self.reachable.setdefault(cid, set())
            (allowed.add if data.granted else allowed.discard)(data.channel)
        if kind == "message_feedback" and data.kind in ("unsubscribe", "complaint"):
            self.reachable.setdefault(cid, set()).discard(data.channel)
        if kind == "page_view" and data.page == "pdp" and data.sku:
            return self.decide(e, "browse", data.sku)
        if kind == "add_to_cart":
            cart.append(data.sku)
            return self.decide(e, "cart", data.sku)
        if kind == "checkout_start" and cart:
            return self.decide(e, "checkout", cart[0])
        if kind == "order_placed":
            skus = [i.sku for i in data.items]
            self.affinity.learn_order(skus)
            self.carts[cid] = []
            return self.decide(e, "post_purchase", skus[0])
        return []

    def decide(self, event: Envelope, moment: str, sku: str) -> list[Action]:
        return []

    def related(self, sku: str) -> list[tuple[str, str]]:
        """(relation, sku) of everything related to `sku`, the catalog's first."""
        found: list[tuple[str, str]] = [
            (r, s) for r in RELATIONS for s in self.catalog.related(sku, r)
        ]
        if not found:
            found = [("affinity", s) for s in self.affinity.top(sku, 3) if s in self.catalog]
        return found

    def u(self, *parts: object) -> float:
        key = "\x1f".join(str(p) for p in (self.name, self.seed, *parts))
        return int.from_bytes(blake2b(key.encode(), digest_size=8).digest(), "big") / _SCALE

    def action(
        self,
        event: Envelope,
        moment: str,
        channel: str,
        relation: str,
        sku: str,
        frame: str,
        intensity: str,
        delay_s: float = 0.0,
        expected_profit: float = 0.0,
    ) -> Action:
        spec = self.policy.channels[channel]
        at = event.ts + timedelta(hours=spec.delay_hours, seconds=delay_s)
        return build(
            {
                "action_id": action_id(event.customer_id, event.event_id, f"{self.name}:{channel}"),
                "customer_id": event.customer_id,
                "ts": event.ts,
                "play": RELATION_PLAY[relation],
                "channel": channel,
                "offer_sku": sku,
                "frame": frame,
                "intensity": intensity,
                "not_before": at,
                "expires_at": at + timedelta(hours=spec.ttl_hours),
                "suppress": [],
                "holdout": False,
                "expected_profit": round(expected_profit, 4),
                "propensity": 1.0,
                "experiments": {},
                "reasons": [f"moment:{moment}", f"offer:{relation}", f"baseline:{self.name}"],
                "policy_version": self.name,
                "model_version": self.name,
                "source_event_id": event.event_id,
            }
        )

    def channels(self, moment: str, customer_id: str) -> list[str]:
        allowed = self.reachable.get(customer_id, set())
        return [
            c
            for c in self.policy.moments[moment].channels
            if c not in ("email", "sms") or c in allowed
        ]

    def can_message(self, customer_id: str, channel: str) -> bool:
        return channel in self.reachable.get(customer_id, set())


class NeverUpsell(_Baseline):
    name = "never"

    def process(self, event: dict[str, Any]) -> list[Action]:
        return []


class AlwaysUpsell(_Baseline):
    name = "always"

    def decide(self, event: Envelope, moment: str, sku: str) -> list[Action]:
        related = self.related(sku)
        if not related:
            return []
        relation, offer = related[0]
        frame = self.policy.relation_frames[relation][0]
        cid = event.customer_id
        onsite = [c for c in self.channels(moment, cid) if not self.policy.channels[c].outbound]
        channels = [*onsite[:1], *(c for c in ("email", "sms") if self.can_message(cid, c))]
        channels.append("paid_retargeting")
        return [self.action(event, moment, c, relation, offer, frame, "medium") for c in channels]


class Widget(_Baseline):
    name = "widget"

    def decide(self, event: Envelope, moment: str, sku: str) -> list[Action]:
        if moment not in ("browse", "cart"):
            return []
        accessories = self.catalog.related(sku, "accessories")
        if not accessories:
            return []
        channel = "onsite_pdp" if moment == "browse" else "onsite_cart"
        return [
            self.action(
                event, moment, channel, "accessories", accessories[0], "completeness", "low"
            )
        ]


class Rules(_Baseline):
    name = "rules"

    def decide(self, event: Envelope, moment: str, sku: str) -> list[Action]:
        if moment != "post_purchase":
            return []
        data: Any = event
        top = max(data.items, key=lambda i: i.price).sku
        out = []
        accessories = self.catalog.related(top, "accessories")
        if accessories:
            out.append(
                self.action(
                    event,
                    moment,
                    "post_purchase",
                    "accessories",
                    accessories[0],
                    "completeness",
                    "low",
                )
            )
        for item in data.items:
            subs = self.catalog.related(item.sku, "subscription")
            if subs and self.can_message(event.customer_id, "email"):
                out.append(
                    self.action(
                        event, moment, "email", "subscription", subs[0], "convenience", "low"
                    )
                )
                break
        return out


class RandomUpsell(_Baseline):
    name = "random"

    def decide(self, event: Envelope, moment: str, sku: str) -> list[Action]:
        key = (event.customer_id, event.event_id)
        if self.u(*key, "offer") < 0.5:
            return []
        options = [("self", sku), *self.related(sku)]
        relation, offer = options[int(self.u(*key, "what") * len(options))]
        channels = [*self.channels(moment, event.customer_id), "paid_retargeting"]
        channel = channels[int(self.u(*key, "where") * len(channels))]
        frames = self.policy.relation_frames[relation]
        frame = frames[int(self.u(*key, "frame") * len(frames))]
        intensity = _INTENSITIES[int(self.u(*key, "intensity") * 3)]
        return [self.action(event, moment, channel, relation, offer, frame, intensity)]


BASELINES: dict[str, type[_Baseline]] = {
    "never": NeverUpsell,
    "always": AlwaysUpsell,
    "widget": Widget,
    "rules": Rules,
    "random": RandomUpsell,
}
