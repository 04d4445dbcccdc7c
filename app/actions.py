"""Building Action records: the deterministic action id and the fields every action shares."""

from __future__ import annotations

from datetime import datetime, timedelta
from hashlib import blake2b

from schemas import Action, Channel, Frame, Intensity, Play, Suppression


def action_id(
    customer_id: str, event_id: str, slot: int, play: str, channel: str, offer_sku: str | None
) -> str:
    """A stable id: the same decision for the same event always gets the same id.

    Connectors use it as the idempotency key, so a redelivered action is recognised.
    """
    text = "\x1f".join((customer_id, event_id, str(slot), play, channel, offer_sku or ""))
    return blake2b(text.encode("utf-8"), digest_size=16).hexdigest()


def make_action(
    *,
    customer_id: str,
    event_id: str,
    ts: datetime,
    play: Play,
    channel: Channel,
    ttl: timedelta,
    policy_version: str,
    model_version: str,
    slot: int = 0,
    offer_sku: str | None = None,
    frame: Frame | None = None,
    intensity: Intensity = "low",
    delay: timedelta = timedelta(0),
    suppress: tuple[tuple[Channel, timedelta], ...] = (),
    holdout: bool = False,
    expected_profit: float = 0.0,
    propensity: float = 1.0,
    reasons: tuple[str, ...] = (),
) -> Action:
    """An Action decided at event time `ts`, valid from `ts + delay` for `ttl`."""
    not_before = ts + delay
    return Action(
        action_id=action_id(customer_id, event_id, slot, play, channel, offer_sku),
        customer_id=customer_id,
        ts=ts,
        play=play,
        channel=channel,
        offer_sku=offer_sku,
        frame=frame,
        intensity=intensity,
        not_before=not_before,
        expires_at=not_before + ttl,
        suppress=[Suppression(channel=c, until=ts + d) for c, d in suppress],  # type: ignore[arg-type]
        holdout=holdout,
        expected_profit=expected_profit,
        propensity=propensity,
        reasons=list(reasons),
        policy_version=policy_version,
        model_version=model_version,
        source_event_id=event_id,
    )
