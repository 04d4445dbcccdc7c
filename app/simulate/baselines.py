"""The policies tact is measured against, on the same customers and draws.

    never    no actions at all: what the store earns on its own (the zero of incremental
             profit)
    always   at every moment, the item most related to what the customer looks at (the
             catalog's first relation, else what is most often bought with it) on every
             channel, at medium intensity: what a typical "recommend everywhere" tool does
    random   at every moment, a coin decides whether to offer; if so a random related item
             (or fit guidance on the item itself), channel, frame and intensity

They decide at the same moments as the engine (product views, cart adds, checkouts, orders)
and write Actions the loop delivers the same way.
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

    def process(self, event: dict[str, Any]) -> list[Action]:
        e = validate_object(event)
        cid, kind = e.customer_id, e.type
        cart = self.carts.setdefault(cid, [])
        data: Any = e
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
    ) -> Action:
        spec = self.policy.channels[channel]
        at = event.ts + timedelta(hours=spec.delay_hours)
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
                "expected_profit": 0.0,
                "propensity": 1.0,
                "experiments": {},
                "reasons": [f"moment:{moment}", f"offer:{relation}", f"baseline:{self.name}"],
                "policy_version": self.name,
                "model_version": self.name,
                "source_event_id": event.event_id,
            }
        )

    def channels(self, moment: str) -> list[str]:
        return list(self.policy.moments[moment].channels)


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
        onsite = [c for c in self.channels(moment) if not self.policy.channels[c].outbound]
        channels = [*onsite[:1], "email", "sms", "paid_retargeting"]
        return [self.action(event, moment, c, relation, offer, frame, "medium") for c in channels]


class RandomUpsell(_Baseline):
    name = "random"

    def decide(self, event: Envelope, moment: str, sku: str) -> list[Action]:
        key = (event.customer_id, event.event_id)
        if self.u(*key, "offer") < 0.5:
            return []
        options = [("self", sku), *self.related(sku)]
        relation, offer = options[int(self.u(*key, "what") * len(options))]
        channels = [*self.channels(moment), "paid_retargeting"]
        channel = channels[int(self.u(*key, "where") * len(channels))]
        frames = self.policy.relation_frames[relation]
        frame = frames[int(self.u(*key, "frame") * len(frames))]
        intensity = _INTENSITIES[int(self.u(*key, "intensity") * 3)]
        return [self.action(event, moment, channel, relation, offer, frame, intensity)]


BASELINES: dict[str, type[_Baseline]] = {
    "never": NeverUpsell,
    "always": AlwaysUpsell,
    "random": RandomUpsell,
}
