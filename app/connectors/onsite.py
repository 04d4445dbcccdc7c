"""The onsite connector: an HTTP decision API the storefront asks what to show.

The connector keeps each customer's current Action per onsite surface (onsite_pdp,
onsite_cart, post_purchase, account_portal) in a Redis hash, as the SDK delivers them; a newer
Action for a surface replaces the older, and a later suppression of that surface withdraws it.
The API reads it:

    GET /v1/customers/{customer_id}/offer?surface=onsite_pdp
        200  the Action (JSON) when one is due and not expired
        204  nothing to show (none, not yet due, expired, or withdrawn)
        400  an unknown surface
    GET /healthz   200

One Redis HGET per request, on a pooled async connection with the C parser.
"""

from __future__ import annotations

import time
from typing import Any

from aiohttp import web

from app import codec
from schemas.types import event_seconds as epoch

SURFACES = ("onsite_pdp", "onsite_cart", "post_purchase", "account_portal")
_KEEP_S = 8 * 86400  # a customer's hash lives this long after its last Action


def key_of(prefix: str, customer: str) -> str:
    return f"{prefix}:connector:onsite:{customer}"


class Onsite:
    name = "onsite"
    channels = frozenset(SURFACES)

    def __init__(self, store: Any, prefix: str) -> None:
        self.store = store
        self.prefix = prefix

    def deliver(self, action: dict[str, Any]) -> None:
        key = key_of(self.prefix, action["customer_id"])
        self.store.hset(key, action["channel"], codec.dumps(action))
        self.store.expire(key, _KEEP_S)

    def observe(self, action: dict[str, Any]) -> None:
        """A later Action's suppression of a surface withdraws what it shows."""
        key = key_of(self.prefix, action["customer_id"])
        for quiet in action.get("suppress") or ():
            surface = quiet.get("channel")
            if surface not in SURFACES or surface == action["channel"]:
                continue
            shown = self.store.hget(key, surface)
            if shown is not None and epoch(codec.loads(shown)["not_before"]) < epoch(
                quiet["until"]
            ):
                self.store.hdel(key, surface)


def make_app(store: Any, prefix: str) -> web.Application:
    """The API on an async Redis client (`redis.asyncio.Redis`)."""

    async def offer(request: web.Request) -> web.StreamResponse:
        surface = request.query.get("surface", "onsite_pdp")
        if surface not in SURFACES:
            raise web.HTTPBadRequest(
                text=f"unknown surface {surface!r}; one of {', '.join(SURFACES)}"
            )
        raw = await store.hget(key_of(prefix, request.match_info["customer_id"]), surface)
        if raw is None:
            return web.Response(status=204)
        action = codec.loads(raw)
        now = time.time()
        if epoch(action["not_before"]) > now or epoch(action["expires_at"]) < now:
            return web.Response(status=204)
        return web.Response(body=raw, content_type="application/json")

    async def health(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/v1/customers/{customer_id}/offer", offer)
    app.router.add_get("/healthz", health)
    return app
