"""From an event to Actions: which events are decision moments, and how a decision becomes
an upsell, a protect, a follow-up or a scheduled refill offer, with its sequencing effects.

Slots name each action of an event ("decision", "followup", "refill:<sku>"); the action id is a
hash of customer, event and slot.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Any

from app.actions import action_id, build, suppression, utc
from app.arbitration import Arbiter, Context, Offer, Scored
from app.catalog import Catalog
from app.holdout import in_holdout
from app.models import Models
from app.observe import ReadinessTracker
from app.outcomes import OutcomeLearner
from app.policy import MomentName, Policy
from app.readiness import DAY, HOUR, CustomerState, Readiness
from app.referee import Segments, segments_of
from schemas import (
    Action,
    Envelope,
)

_ONSITE_UPSELL = frozenset({"onsite_pdp", "onsite_cart"})
_UPSELL_PLAYS = frozenset({"expand", "commit"})
_MAX_REFILLS = 2
_MAX_REASONS = 12


@dataclass(slots=True)
class Decision:
    """What the engine considered at one moment (for `tact policy explain` and tests)."""

    customer_id: str
    event_id: str
    moment: str
    t: float
    readiness: Readiness | None = None
    segments: Segments | None = None
    rules: list[str] = field(default_factory=list)
    candidates: list[Scored] = field(default_factory=list)
    drops: list[tuple[str, str]] = field(default_factory=list)
    chosen: Scored | None = None
    actions: list[Action] = field(default_factory=list)
    note: str = ""


class Decider:
    def __init__(
        self,
        policy: Policy,
        catalog: Catalog,
        models: Models,
        arbiter: Arbiter,
        tracker: ReadinessTracker,
        learner: OutcomeLearner,
    ) -> None:
        self.policy = policy
        self.catalog = catalog
        self.models = models
        self.arbiter = arbiter
        self.tracker = tracker
        self.learner = learner
        self.on_decision: Callable[[Decision], None] | None = None
        self._last: Context | None = None  # the latest moment's context (reused by refills)
        self._threshold = policy.min_expected_profit
        self._dispatch: dict[str, Callable[[str, CustomerState, Any, float], list[Action]]] = {
            "page_view": self._on_page_view,
            "add_to_cart": self._on_add_to_cart,
            "checkout_start": self._on_checkout,
            "order_placed": self._order,
            "order_returned": self._protect_on("order_returned"),
            "refund": self._protect_on("refund"),
            "support_contact": self._protect_on("support_contact"),
            "message_feedback": self._on_message_feedback,
        }
        self._budget_frames = {f for r in policy.rules for f in r.then.frame_budget}
        self._budget_days = max(
            (b.per_days for r in policy.rules for b in r.then.frame_budget.values()), default=0.0
        )

    # -- dispatch -----------------------------------------------------------------------------
    def decide(self, cid: str, state: CustomerState, event: Envelope, t: float) -> list[Action]:
        """The actions `event` calls for (most events only update readiness: none)."""
        handler = self._dispatch.get(event.type)
        return handler(cid, state, event, t) if handler is not None else []

    def _on_page_view(self, cid: str, state: CustomerState, event: Any, t: float) -> list[Action]:
        if event.page == "pdp" and event.sku:
            return self._moment(cid, state, event, t, "browse", [event.sku], f"pdp:{event.sku}")
        return []

    def _on_add_to_cart(self, cid: str, state: CustomerState, event: Any, t: float) -> list[Action]:
        return self._moment(cid, state, event, t, "cart", [event.sku, *_by_value(state)], None)

    def _on_checkout(self, cid: str, state: CustomerState, event: Any, t: float) -> list[Action]:
        return self._moment(cid, state, event, t, "checkout", _by_value(state), "checkout")

    def _on_message_feedback(
        self, cid: str, state: CustomerState, event: Any, t: float
    ) -> list[Action]:
        if event.kind == "complaint":
            return self._protect_trigger(cid, state, event, t, "complaint")
        return []

    def _protect_on(self, trigger: str) -> Callable[[str, CustomerState, Any, float], list[Action]]:
        def handler(cid: str, state: CustomerState, event: Any, t: float) -> list[Action]:
            return self._protect_trigger(cid, state, event, t, trigger)

        return handler

    # -- moments ------------------------------------------------------------------------------
    def _context(
        self,
        cid: str,
        state: CustomerState,
        event: Envelope,
        t: float,
        moment: MomentName,
        focus: list[str],
    ) -> tuple[Context, Decision]:
        r = self.tracker.get(state, t, self.models.aov_prior(50.0))
        seg = segments_of(self.policy, r)
        verdict = self.arbiter.referee.for_customer(seg, moment)
        ctx = Context(moment, t, state, r, seg, verdict, focus, [])
        return ctx, Decision(cid, event.event_id, moment, t, r, seg, list(verdict.rules))

    def _moment(
        self,
        cid: str,
        state: CustomerState,
        event: Envelope,
        t: float,
        moment: MomentName,
        focus: list[str],
        reuse_key: str | None,
        extra_suppress: dict[str, float] | None = None,
    ) -> list[Action]:
        if moment not in self.policy.moments:
            return []
        if reuse_key is not None and state.live.get(reuse_key, [0.0])[0] > t:
            self._report(Decision(cid, event.event_id, moment, t, note="reused: still live"))
            return []
        ctx, decision = self._context(cid, state, event, t, moment, focus)
        self._last = ctx
        delivery = {
            c: self.delivery_time(state, c, t) for c in self.policy.moments[moment].channels
        }
        channels = self.arbiter.channels(ctx, delivery)
        offers = self.arbiter.offers(ctx)
        scored = self.arbiter.score(ctx, offers, channels, self._at_stake(state, focus, ctx))
        best = max(scored, key=lambda s: s.eip) if scored else None
        decision.candidates, decision.drops = scored, ctx.drops
        holdout = in_holdout(cid, self.policy.holdout.salt, self.policy.holdout.share)
        if best is not None and best.eip > self._threshold:
            actions = [
                self._upsell(
                    cid,
                    event,
                    ctx,
                    best,
                    delivery[best.channel],
                    holdout,
                    "decision",
                    extra_suppress,
                )
            ]
            decision.chosen = best
            follow = self._followup(cid, event, ctx, best, holdout)
            if follow is not None:
                actions.append(follow)
        else:
            actions = [self._protect(cid, event, ctx, best, holdout, extra_suppress)]
        if reuse_key is not None:
            ttl = self.policy.channels[self.policy.moments[moment].channels[0]].ttl_hours
            state.live[reuse_key] = [t + ttl * HOUR]
            _prune_live(state, t)
        decision.actions = actions
        self._report(decision)
        return actions

    def _order(self, cid: str, state: CustomerState, event: Any, t: float) -> list[Action]:
        skus = {item.sku for item in event.items}
        cancel = _cancellations(state, skus, t)
        lines = sorted(event.items, key=lambda i: -i.price * i.qty)
        actions = self._moment(
            cid,
            state,
            event,
            t,
            "post_purchase",
            list(dict.fromkeys(i.sku for i in lines)),
            None,
            cancel,
        )
        refills = [
            s
            for s in dict.fromkeys(i.sku for i in lines)
            if (p := self.catalog.get(s)) is not None and p.kind == "consumable" and p.refill_days
        ]
        for sku in refills[:_MAX_REFILLS]:
            action = self._schedule_refill(cid, state, event, t, sku, self._last)
            if action is not None:
                actions.append(action)
        return actions

    def _schedule_refill(
        self,
        cid: str,
        state: CustomerState,
        event: Envelope,
        t: float,
        sku: str,
        base: Context | None,
    ) -> Action | None:
        """Decide now the offer to make when the consumable bought now runs low (reusing the
        post-purchase moment's readiness when there was one)."""
        if "refill" not in self.policy.moments:
            return None
        product = self.catalog.get(sku)
        assert product is not None and product.refill_days
        seq = self.policy.sequencing
        due = t + max(product.refill_days * seq.refill_due_from - seq.refill_lead_days, 1.0) * DAY
        if base is not None and base.t == t:
            r = replace(base.readiness, maturity=seq.refill_due_from, due_consumable=sku)
            verdict = self.arbiter.referee.for_customer(base.segments, "refill")
            ctx = Context("refill", t, state, r, base.segments, verdict, [sku], [])
            decision = Decision(
                cid, event.event_id, "refill", t, r, base.segments, list(verdict.rules)
            )
        else:
            ctx, decision = self._context(cid, state, event, t, "refill", [sku])
            ctx.readiness = replace(ctx.readiness, maturity=seq.refill_due_from, due_consumable=sku)
            decision.readiness = ctx.readiness
        delivery = {
            c: self.delivery_time(state, c, due) for c in self.policy.moments["refill"].channels
        }
        channels = self.arbiter.channels(ctx, delivery)
        scored = self.arbiter.score(ctx, self.arbiter.refill_offers(sku), channels, 0.0)
        best = max(scored, key=lambda s: s.eip) if scored else None
        decision.candidates, decision.drops = scored, ctx.drops
        if best is None or best.eip <= self._threshold:
            decision.note = "no refill offer worth making"
            self._report(decision)
            return None
        holdout = in_holdout(cid, self.policy.holdout.salt, self.policy.holdout.share)
        action = self._upsell(
            cid, event, ctx, best, delivery[best.channel], holdout, f"refill:{sku}", None
        )
        decision.chosen, decision.actions = best, [action]
        self._report(decision)
        return action

    def _followup(
        self, cid: str, event: Envelope, ctx: Context, best: Scored, holdout: bool
    ) -> Action | None:
        """An onsite upsell may be followed by an email later, if that is still worth it."""
        if not (
            self.policy.sequencing.followup_email_after_onsite
            and best.channel in _ONSITE_UPSELL
            and best.offer.play in _UPSELL_PLAYS
            and "email" in self.policy.channels
        ):
            return None
        at = self.delivery_time(ctx.state, "email", ctx.t)
        if not self.arbiter.channel_open(ctx, "email", at):
            return None
        option = self.arbiter.evaluate(ctx, best.offer, "email", best.frame, "low")
        if option is None or option.eip <= self._threshold:
            return None
        return self._upsell(cid, event, ctx, option, at, holdout, "followup", None)

    def _protect_trigger(
        self, cid: str, state: CustomerState, event: Envelope, t: float, trigger: str
    ) -> list[Action]:
        quiet = self.policy.protect.get(trigger)
        if quiet is None:
            return []
        for channel, hours in quiet.items():
            state.quiet(channel, t + hours * HOUR)
        r = self.tracker.get(state, t, self.models.aov_prior(50.0))
        holdout = in_holdout(cid, self.policy.holdout.salt, self.policy.holdout.share)
        longest = max(quiet.values(), default=1.0)
        action = self._protect_action(
            cid,
            event,
            t,
            t + longest * HOUR,
            {c: t + h * HOUR for c, h in quiet.items()},
            holdout,
            0.0,
            [f"protect:{trigger}", *segments_of(self.policy, r).codes()],
        )
        self._report(
            Decision(
                cid,
                event.event_id,
                f"protect:{trigger}",
                t,
                r,
                actions=[action],
                note=f"restraint after {trigger}",
            )
        )
        return [action]

    # -- building actions ---------------------------------------------------------------------
    def _upsell(
        self,
        cid: str,
        event: Envelope,
        ctx: Context,
        best: Scored,
        at: float,
        holdout: bool,
        slot: str,
        extra_suppress: dict[str, float] | None,
    ) -> Action:
        p, state, t = self.policy, ctx.state, ctx.t
        spec = p.channels[best.channel]
        offer = best.offer
        suppress = dict(extra_suppress or {})
        seq = p.sequencing
        if best.channel in _ONSITE_UPSELL and offer.play in _UPSELL_PLAYS:
            suppress["paid_retargeting"] = t + seq.onsite_upsell_suppresses_paid_hours * HOUR
            state.last_onsite_upsell = t
        if ctx.moment == "post_purchase" and offer.play in _UPSELL_PLAYS:
            suppress["paid_retargeting"] = max(
                suppress.get("paid_retargeting", 0.0),
                t + seq.post_purchase_suppresses_paid_hours * HOUR,
            )
        suppress.pop(best.channel, None)  # an action never cancels itself
        for channel, until in suppress.items():
            state.quiet(channel, until)
        state.count_use(best.channel, at, t)
        if not spec.outbound:
            state.count_use("onsite", at, t)
        if best.frame in self._budget_frames:
            state.use_frame(best.frame, t, t - self._budget_days * DAY)
        expires = at + spec.ttl_hours * HOUR
        if spec.outbound or slot != "decision":
            state.scheduled.append([at, expires, best.channel, offer.product.sku])
            del state.scheduled[:-8]
        if not holdout and offer.play in _UPSELL_PLAYS:
            # Assist is judged by engagement (offer feedback), not by purchases of the item it
            # supports, most of which would happen anyway.
            self.learner.offered(
                cid, state, best, ctx.readiness, at, self._return_prior(offer, ctx.readiness)
            )
        reasons = [
            f"moment:{ctx.moment}",
            *ctx.segments.codes(),
            *ctx.verdict.codes,
            f"offer:{offer.relation}",
            f"pick:{offer.play}:{best.channel}:{best.frame}:{best.intensity}",
        ]
        if holdout:
            reasons.append("holdout:global")
        if slot != "decision":
            reasons.append(f"seq:{slot.split(':')[0]}")
        reasons += ctx.channel_drops[:4]
        return self._action(
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
            holdout=holdout,
            expected_profit=best.eip,
            reasons=reasons,
        )

    def _protect(
        self,
        cid: str,
        event: Envelope,
        ctx: Context,
        best: Scored | None,
        holdout: bool,
        extra_suppress: dict[str, float] | None,
    ) -> Action:
        t, moment = ctx.t, self.policy.moments[ctx.moment]
        suppress = dict(extra_suppress or {})
        for channel, hours in moment.protect_suppresses.items():
            suppress[channel] = max(suppress.get(channel, 0.0), t + hours * HOUR)
        for channel, until in suppress.items():
            ctx.state.quiet(channel, until)
        ttl = self.policy.channels[moment.channels[0]].ttl_hours * HOUR
        reasons = [
            f"moment:{ctx.moment}",
            *ctx.segments.codes(),
            *ctx.verdict.codes,
            "protect:not_profitable" if ctx.considered else "protect:no_candidate",
        ]
        if holdout:
            reasons.append("holdout:global")
        reasons += ctx.channel_drops[:4]
        return self._protect_action(
            cid,
            event,
            t,
            max([t + ttl, *suppress.values()]),
            suppress,
            holdout,
            0.0,  # doing nothing earns nothing extra
            reasons,
        )

    def _protect_action(
        self,
        cid: str,
        event: Envelope,
        t: float,
        expires_at: float,
        suppress: dict[str, float],
        holdout: bool,
        expected_profit: float,
        reasons: list[str],
    ) -> Action:
        """A protect decision: no offer, and these channels quiet until then."""
        return self._action(
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
            holdout=holdout,
            expected_profit=expected_profit,
            reasons=reasons,
        )

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
        reasons: list[str],
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
                "expected_profit": round(expected_profit, 4),
                "propensity": 1.0,
                "reasons": reasons[:_MAX_REASONS],
                "policy_version": self.policy.version,
                "model_version": self.models.version,
                "source_event_id": event.event_id,
            }
        )

    # -- helpers ------------------------------------------------------------------------------
    def delivery_time(self, state: CustomerState, channel: str, t: float) -> float:
        """When an action on `channel` decided at `t` may be delivered: after the channel's
        delay, and for outbound channels outside the customer's quiet hours."""
        spec = self.policy.channels[channel]
        at = t + spec.delay_hours * HOUR
        zone = state.zone if state.zone is not None else self.policy.time.assume_utc_offset_minutes
        if not spec.outbound or zone is None:
            return at
        quiet = self.policy.time.quiet_hours
        local_hour = ((at + zone * 60) % DAY) / HOUR
        start, end = quiet.start, quiet.end
        in_quiet = (
            (start <= local_hour or local_hour < end)
            if start > end
            else (start <= local_hour < end)
        )
        if not in_quiet:
            return at
        wait = (end - local_hour) % 24
        return at + wait * HOUR

    def _at_stake(self, state: CustomerState, focus: list[str], ctx: Context) -> float:
        """Margin an offer could cost by distracting: the cart's, and the item in focus (not
        yet in the cart) weighted by how likely the customer is to buy it."""
        default_rate = self.policy.priors.value.margin_rate
        total = 0.0
        for sku, (qty, price) in state.cart.items():
            product = self.catalog.get(sku)
            total += qty * price * (product.margin_rate if product is not None else default_rate)
        if focus and focus[0] not in state.cart and ctx.moment in ("browse", "cart"):
            product = self.catalog.get(focus[0])
            if product is not None:
                total += product.margin * ctx.readiness.confidence * 0.5
        return total

    def _return_prior(self, offer: Offer, r: Readiness) -> float:
        prior = self.policy.priors.return_
        return prior.base + prior.kind.get(offer.product.kind, 0.0) + prior.risk * r.risk

    def _report(self, decision: Decision) -> None:
        if self.on_decision is not None:
            self.on_decision(decision)


def _by_value(state: CustomerState) -> list[str]:
    return [sku for sku, _ in sorted(state.cart.items(), key=lambda kv: -kv[1][0] * kv[1][1])]


def _cancellations(state: CustomerState, skus: set[str], t: float) -> dict[str, float]:
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


def _prune_live(state: CustomerState, t: float) -> None:
    if len(state.live) > 16:
        state.live = {k: v for k, v in state.live.items() if v[0] > t}
