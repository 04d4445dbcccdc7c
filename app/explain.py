"""Explanations of decisions, as text: why each candidate was chosen or dropped."""

from __future__ import annotations

from collections.abc import Iterable

from app.actions import utc
from app.context import Scored
from app.decisions import Decision
from schemas.types import format_event_time


def explain(decision: Decision, top: int = 8, threshold: float = 0.0) -> list[str]:
    """Lines describing one decision: readiness, segments, rules, drops, ranked candidates,
    and what was sent."""
    when = format_event_time(utc(decision.t))
    lines = [f"{when}  {decision.moment}  (event {decision.event_id})"]
    if decision.note:
        lines.append(f"  {decision.note}")
    r = decision.readiness
    if r is not None:
        lines.append(
            f"  readiness  confidence {r.confidence:.2f}  urgency {r.urgency:.2f}  "
            f"price sensitivity {r.price_sensitivity:.2f}  maturity {r.maturity:.2f}  "
            f"risk {r.risk:.2f}  ltv {r.ltv:.0f}"
        )
    if decision.segments is not None:
        lines.append(f"  segments   {', '.join(decision.segments.codes)}")
    if decision.rules:
        lines.append(f"  rules      {', '.join(decision.rules)}")
    for what, why in _unique(decision.drops):
        lines.append(f"  dropped    {what}: {why}")
    ranked = sorted(decision.candidates, key=lambda c: -c.eip)
    if ranked:
        lines.append(
            f"  candidates ({len(ranked)}, best first; EIP = p_accept x value - channel - "
            "pressure - cannibalisation)"
        )
    for c in ranked[:top]:
        mark = "->" if c is decision.chosen else "  "
        o = c.offer
        lines.append(
            f"   {mark} {o.play:<7} {o.product.sku:<14} {o.relation:<12} {c.channel:<16} "
            f"{c.frame:<20} {c.intensity:<6} p={c.p_accept:.3f} value={c.value:7.2f} "
            f"cost={c.channel_cost:.2f} pressure={c.pressure:.2f} "
            f"cannib={c.cannibalisation:.2f} EIP={c.eip:+.2f}"
        )
    if len(ranked) > top:
        lines.append(f"      ... {len(ranked) - top} more (--top to show them)")
    if decision.arms:
        drawn = ", ".join(
            f"{_arm(arm)} {p:.0%}" for arm, p in sorted(decision.arms, key=lambda ap: -ap[1])
        )
        lines.append(f"  draw       (Thompson sampling) {drawn}")
    if ranked and decision.chosen is None:
        lines.append(f"  no candidate earns more than {threshold:.2f}: protect")
    for action in decision.actions:
        quiet = ", ".join(
            f"{s.channel} until {format_event_time(s.until)}" for s in action.suppress
        )
        lines.append(
            f"  => {action.play} on {action.channel}"
            + (
                f": {action.offer_sku} ({action.frame}, {action.intensity})"
                if action.offer_sku
                else ""
            )
            + (f"; quiet: {quiet}" if quiet else "")
            + ("  [holdout: recorded, not delivered]" if action.holdout else "")
        )
    return lines


def _arm(arm: Scored | None) -> str:
    if arm is None:
        return "protect"
    return f"{arm.offer.play}:{arm.offer.product.sku}@{arm.channel}/{arm.frame}"


def _unique(drops: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    return list(dict.fromkeys(drops))
