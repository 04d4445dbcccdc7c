"""What a decision does: the Action it becomes, and its effects on the customer's future.

Suppressions (an onsite upsell keeps paid retargeting quiet; a protect keeps channels quiet),
caps counted on the day an action lands, frames used against their budgets, scheduled offers
(and their cancellation by a purchase), attribution windows opened for learning, and quiet
hours that push outbound delivery to the morning in the customer's zone.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any, Final

from app.actions import action_id, after_quiet, build, quiet_hours, suppression, utc
from app.attribution import Attribution
from app.bandit import uniform
from app.codec import rounded
from app.context import Context, Scored
from app.distraction import MOMENTS as DISTRACTION_MOMENTS
from app.economics import Economics
from app.experiments import Assignment
from app.models import Models
from app.policy import Policy
from app.readiness import DAY, HOUR, CustomerState
from schemas import Action, Envelope, QuietHours

ONSITE_UPSELL: Final = frozenset({"onsite_pdp", "onsite_cart"})
UPSELL_PLAYS: Final = frozenset({"expand", "commit"})
_MAX_REASONS: Final = 12
_MAX_SCHEDULED: Final = 64  # pending scheduled offers remembered per customer
_log = logging.getLogger(__name__)


class Sequencer:
    """Builds Actions and applies what they imply to the customer's state."""

    def __init__(
        self, policy: Policy, models: Models, attribution: Attribution, economics: Economics
    ) -> None:
        self.policy = policy
        self.models = models
        self.attribution = attribution
        self.economics = economics
        self._distraction_share = policy.experiments.distraction_test
        self._budget_frames = {f for r in policy.rules for f in r.then.frame_budget}
        self._budget_days = max(
            (b.per_days for r in policy.rules for b in r.then.frame_budget.values()), default=0.0
        )

    def upsell(
        self,
        cid: str,
        event: Envelope,
        ctx: Context,
        best: Scored,
        at: float,
        slot: str,
        extra_suppress: dict[str, float] | None,
        propensity: float,
    ) -> Action:
        p, state, t = self.policy, ctx.state, ctx.t
        spec = p.channels[best.channel]
        offer = best.offer
        suppress = dict(extra_suppress or {})
        seq = p.sequencing
        if best.channel in ONSITE_UPSELL and offer.play in UPSELL_PLAYS:
            suppress["paid_retargeting"] = t + seq.onsite_upsell_suppresses_paid_hours * HOUR
        if ctx.moment == "post_purchase" and offer.play in UPSELL_PLAYS:
            suppress["paid_retargeting"] = max(
                suppress.get("paid_retargeting", 0.0),
                t + seq.post_purchase_suppresses_paid_hours * HOUR,
            )
        suppress.pop(best.channel, None)  # an action never cancels itself
        self._quiet(cid, state, suppress, t)
        zone = p.time.assume_utc_offset_minutes
        state.count_use(best.channel, at, t, zone)
        if p.counts_onsite(best.channel):
            state.count_use("onsite", at, t, zone)
        if best.frame in self._budget_frames:
            state.use_frame(best.frame, t, t - self._budget_days * DAY)
        expires = at + spec.ttl_hours * HOUR
        if spec.outbound or slot != "decision":
            schedule(state, [at, expires, best.channel, offer.product.sku], t)
        held_out = ctx.assignment.held_out(offer.play) or self._distraction_test(
            ctx, best, slot, action_id(cid, event.event_id, slot)
        )
        reasons = [
            f"moment:{ctx.moment}",
            *ctx.segments.codes,
            *ctx.verdict.codes,
            f"offer:{offer.relation}",
            f"pick:{offer.play}:{best.channel}:{best.frame}:{best.intensity}",
        ]
        if held_out:
            reasons.append(held_out)
        if slot != "decision":
            reasons.append(f"seq:{slot.split(':')[0]}")
        reasons += ctx.channel_drops[:4]
        action = self._action(
            cid,
            event,
            slot,
            t,
            play=offer.play,
            channel=best.channel,
            offer_sku=offer.product.sku,
            frame=best.frame,
            intensity=best.intensity,
            not_before=at,
            expires_at=expires,
            suppress=suppress,
            holdout=held_out is not None,
            expected_profit=best.eip,
            propensity=propensity,
            experiments=ctx.assignment.arms,
            reasons=reasons,
            quiet=self.quiet_for(state, best.channel),
        )
        r, product = ctx.readiness, offer.product
        features = (
            best.prior,
            r.confidence,
            r.urgency,
            r.price_sensitivity,
            r.maturity,
            r.risk,
            r.signal("posture", best.channel),
            r.ltv_score,
            product.kind,
            self.economics.return_prior(product, r),
            self.economics.organic_prior(ctx, offer) if offer.relation != "self" else 0.0,
            offer.price_step,
            1 if offer.seen else 0,
            1 if offer.with_base else 0,
            offer.passed,
            offer.price_level,
        )
        # (to 6 decimals, as `predicted`: it teaches the same, and the window's JSON, in every
        # checkpoint and cold state until it closes, is shorter: 170 bytes of features, 100)
        learn = [rounded(x, 6) if isinstance(x, float) else x for x in features]
        predicted = [
            rounded(best.p_accept, 6),
            rounded(best.p_organic, 6),
            rounded(best.p_return, 6),
        ]
        self.attribution.open(
            state,
            action,
            t,
            at,
            offer.relation,
            ctx.segments.key,
            held_out or "",
            learn,
            predicted,
            ctx.moment,
        )
        if held_out is None and slot == "decision" and offer.relation != "self":
            # made at this moment (not its follow-up, nor a refill booked for later): the next
            # offer of the item knows it was let pass
            state.note_offer(offer.product.sku, t, p.priors.accept.passed_days)
        return action

    def _distraction_test(self, ctx: Context, best: Scored, slot: str, aid: str) -> str | None:
        """Hold an onsite offer or assist made while a purchase is under way back, at random
        (the policy's `experiments.distraction_test` share): the control of
        app/distraction.py."""
        if (
            not self._distraction_share
            or slot != "decision"
            or ctx.moment not in DISTRACTION_MOMENTS
            or best.channel not in ONSITE_UPSELL
        ):
            return None
        u = uniform(0, f"{self.policy.experiments.salt}:distraction:{aid}")
        return "holdout:distraction" if u < self._distraction_share else None

    def protect(
        self,
        cid: str,
        event: Envelope,
        ctx: Context,
        extra_suppress: dict[str, float] | None,
        propensity: float,
    ) -> Action:
        t, moment = ctx.t, self.policy.moments[ctx.moment]
        suppress = dict(extra_suppress or {})
        for channel, hours in moment.protect_suppresses.items():
            suppress[channel] = max(suppress.get(channel, 0.0), t + hours * HOUR)
        ttl = self.policy.channels[moment.channels[0]].ttl_hours * HOUR
        reasons = [
            f"moment:{ctx.moment}",
            *ctx.segments.codes,
            *ctx.verdict.codes,
            "protect:not_profitable" if ctx.considered else "protect:no_candidate",
        ]
        reasons += ctx.channel_drops[:4]
        return self.protect_action(
            cid,
            event,
            ctx.state,
            t,
            max([t + ttl, *suppress.values()]),
            suppress,
            ctx.assignment,
            ctx.segments.key,
            reasons,
            propensity,
        )

    def protect_action(
        self,
        cid: str,
        event: Envelope,
        state: CustomerState,
        t: float,
        expires_at: float,
        suppress: dict[str, float],
        assignment: Assignment,
        segment: str,
        reasons: list[str],
        propensity: float,
    ) -> Action:
        """A protect decision: no offer, these channels quiet until then, and an expected
        incremental profit of 0 (doing nothing earns nothing extra)."""
        self._quiet(cid, state, suppress, t)
        held_out = assignment.held_out("protect")
        if held_out:
            reasons = [*reasons, held_out]
        action = self._action(
            cid,
            event,
            "decision",
            t,
            play="protect",
            channel="none",
            offer_sku=None,
            frame=None,
            intensity="low",
            not_before=t,
            expires_at=expires_at,
            suppress=suppress,
            holdout=held_out is not None,
            expected_profit=0.0,
            propensity=propensity,
            experiments=assignment.arms,
            reasons=reasons,
        )
        self.attribution.open(state, action, t, t, "", segment, held_out or "", None)
        return action

    def _quiet(self, cid: str, state: CustomerState, suppress: dict[str, float], t: float) -> None:
        """Apply suppressions; they cancel pending Actions they cover (as connectors do)."""
        for channel, until in suppress.items():
            state.quiet(channel, until)
            self.attribution.suppressed(cid, state, channel, until, t)

    def _action(
        self,
        cid: str,
        event: Envelope,
        slot: str,
        t: float,
        *,
        play: Any,
        channel: Any,
        offer_sku: str | None,
        frame: Any,
        intensity: Any,
        not_before: float,
        expires_at: float,
        suppress: dict[str, float],
        holdout: bool,
        expected_profit: float,
        propensity: float,
        experiments: dict[str, str],
        reasons: list[str],
        quiet: QuietHours | None = None,
    ) -> Action:
        ts = event.ts
        return build(
            {
                "action_id": action_id(cid, event.event_id, slot),
                "customer_id": cid,
                "ts": ts,
                "play": play,
                "channel": channel,
                "offer_sku": offer_sku,
                "frame": frame,
                "intensity": intensity,
                "not_before": ts if not_before == t else ts + timedelta(seconds=not_before - t),
                "expires_at": ts + timedelta(seconds=expires_at - t),
                "suppress": [suppression(c, utc(u)) for c, u in sorted(suppress.items())]
                if suppress
                else [],
                "holdout": holdout,
                "expected_profit": rounded(expected_profit, 4),
                "propensity": propensity,
                "experiments": experiments,
                "reasons": reasons[:_MAX_REASONS],
                "policy_version": self.policy.version,
                "model_version": self.models.version,
                "source_event_id": event.event_id,
                "quiet_hours": quiet,
            }
        )

    def delivery_time(self, state: CustomerState, channel: str, t: float) -> float:
        """When an action on `channel` decided at `t` may be delivered: after the channel's
        delay, and for outbound channels outside the customer's quiet hours."""
        spec = self.policy.channels[channel]
        at = t + spec.delay_hours * HOUR
        zone = state.zone_or(self.policy.time.assume_utc_offset_minutes)
        if not spec.outbound or zone is None:
            return at
        quiet = self.policy.time.quiet_hours
        return after_quiet(at, zone, quiet.start, quiet.end)

    def quiet_for(self, state: CustomerState, channel: str) -> QuietHours | None:
        """The quiet hours an Action on `channel` carries, for connectors to check again at
        delivery (a lagging connector must not send at night): outbound channels only, and
        only for a customer of known (or assumed) zone."""
        zone = state.zone_or(self.policy.time.assume_utc_offset_minutes)
        if zone is None or not self.policy.channels[channel].outbound:
            return None
        quiet = self.policy.time.quiet_hours
        return quiet_hours(quiet.start, quiet.end, zone)


def schedule(state: CustomerState, entry: list[Any], t: float) -> None:
    """Remember a scheduled offer ([at, expires, channel, sku]) until it expires, so that a
    purchase of its SKU before then cancels it (`cancellations`). Bounded by time: expired
    entries go; only past _MAX_SCHEDULED pending ones (far more than caps and refill cycles
    allow) does the one expiring first go early, with a warning."""
    kept = [e for e in state.scheduled if e[1] > t]
    kept.append(entry)
    if len(kept) > _MAX_SCHEDULED:
        kept.sort(key=lambda e: e[1])
        dropped = kept.pop(0)
        _log.warning(
            "more than %d offers pending for one customer: the one expiring at %s is no longer"
            " cancelled by a purchase of %s",
            _MAX_SCHEDULED,
            utc(dropped[1]),
            dropped[3],
        )
    state.scheduled = kept


def cancellations(state: CustomerState, skus: set[str], t: float) -> dict[str, float]:
    """Scheduled offers of SKUs just bought are cancelled: their channels stay quiet until
    those offers would have expired (connectors drop pending actions a suppression covers)."""
    cancel: dict[str, float] = {}
    kept = []
    for entry in state.scheduled:
        at, expires, channel, sku = entry
        if sku in skus and at > t:
            cancel[channel] = max(cancel.get(channel, 0.0), expires)
        elif expires > t:
            kept.append(entry)
    state.scheduled = kept
    return cancel


def prune_live(state: CustomerState, t: float) -> None:
    if len(state.live) > 16:
        state.live = {k: v for k, v in state.live.items() if v[0] > t}
