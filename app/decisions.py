"""From an event to decisions: which events are moments, and what each moment decides (an
upsell or a protect, a follow-up email, a scheduled refill offer, restraint after a return).
Building the Actions and their effects on the customer's future is app/sequencing.py.

Slots name each action of an event ("decision", "followup", "refill:<sku>"); the action id is a
hash of customer, event and slot.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Final

from mypy_extensions import mypyc_attr

from app.actions import action_id
from app.arbitration import Arbiter
from app.bandit import Draw, uniform
from app.catalog import Catalog
from app.context import RELATION_PLAY, Context, Offer, Scored
from app.experiments import Experiments
from app.models import Models
from app.observe import ReadinessTracker
from app.offers import Offers
from app.policy import MomentName, Policy
from app.readiness import DAY, HOUR, CustomerState, Readiness
from app.referee import Segments, segments_of
from app.sequencing import ONSITE_UPSELL, UPSELL_PLAYS, Sequencer, cancellations, prune_live
from schemas import Action, Envelope

_MAX_REFILLS: Final = 2


# Builds the arm for (offer sku, relation, channel, frame, intensity) in the current moment,
# whatever the rules say (for following a logged decision); None when it cannot.
ArmResolver = Callable[[str, str, str, str, str], "Scored | None"]


NO_ACTION: Final = -1.0  # a chooser's probability meaning: make no Action at all (no arm has it)

# The event types that can call for an Action (a page view only of a product); every other
# event only updates its customer's state.
ACTING_TYPES: Final = frozenset(
    {
        "page_view",
        "add_to_cart",
        "checkout_start",
        "order_placed",
        "order_returned",
        "refund",
        "support_contact",
        "message_feedback",
        "consent",
    }
)


def may_act(event: Mapping[str, Any]) -> bool:
    """Whether the engine can make an Action for this raw event at all: for a tool that waits
    for the Actions of each event it sends (most events make none)."""
    if event.get("type") == "page_view":
        return event.get("page") == "pdp" and bool(event.get("sku"))
    return event.get("type") in ACTING_TYPES


@mypyc_attr(allow_interpreted_subclasses=True)  # subclassed outside the compiled core
class Chooser:
    """Draws the arm of a decision from its distribution, with a uniform hashed from the seed
    and the action id: the same decision is drawn again when an event is redelivered.
    (app/evaluate/follow.py follows a log instead.)"""

    def __init__(self, seed: int) -> None:
        self.seed = seed

    def choose(
        self, action_id: str, moment: str, arms: list[Scored], draw: Draw, resolve: ArmResolver
    ) -> tuple[Scored | None, float]:
        """The chosen arm (None: protect) and its probability (NO_ACTION with None: no
        Action at all, as when a followed log made none here)."""
        index, p = draw.pick(uniform(self.seed, action_id))
        return (arms[index] if index < len(arms) else None), p

    def follow_up(self, action_id: str, wanted: bool) -> bool:
        """Whether the follow-up `action_id` is made; the engine `wanted` it. Pure: the
        engine asks first with wanted=False, to skip scoring a follow-up nobody would make."""
        return wanted


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
    arms: list[tuple[Scored | None, float]] = field(default_factory=list)  # (None: protect)
    actions: list[Action] = field(default_factory=list)
    note: str = ""

    # (written out: mypyc compiles it, not the one dataclasses generates; one per moment)
    def __init__(
        self,
        customer_id: str,
        event_id: str,
        moment: str,
        t: float,
        readiness: Readiness | None = None,
        segments: Segments | None = None,
        rules: list[str] | None = None,
        candidates: list[Scored] | None = None,
        drops: list[tuple[str, str]] | None = None,
        chosen: Scored | None = None,
        arms: list[tuple[Scored | None, float]] | None = None,
        actions: list[Action] | None = None,
        note: str = "",
    ) -> None:
        self.customer_id = customer_id
        self.event_id = event_id
        self.moment = moment
        self.t = t
        self.readiness = readiness
        self.segments = segments
        self.rules = [] if rules is None else rules
        self.candidates = [] if candidates is None else candidates
        self.drops = [] if drops is None else drops
        self.chosen = chosen
        self.arms = [] if arms is None else arms
        self.actions = [] if actions is None else actions
        self.note = note


class Decider:
    def __init__(
        self,
        policy: Policy,
        catalog: Catalog,
        models: Models,
        arbiter: Arbiter,
        tracker: ReadinessTracker,
        sequencer: Sequencer,
        chooser: Chooser,
        experiments: Experiments | None = None,
    ) -> None:
        self.policy = policy
        self.catalog = catalog
        self.models = models
        self.arbiter = arbiter
        self.tracker = tracker
        self.sequencer = sequencer
        self.chooser = chooser
        self.experiments = experiments if experiments is not None else Experiments(policy)
        self.offers = Offers(policy, catalog, models, arbiter.economics.anyway)
        exploration = policy.exploration
        self._z = exploration.contention_z if exploration.enabled else 0.0
        self.on_decision: Callable[[Decision], None] | None = None
        self._last: Context | None = None  # the latest moment's context (reused by refills)
        self._threshold = policy.min_expected_profit
        self._first_order_value = policy.priors.value.first_order_value
        self._dispatch: dict[str, Callable[[str, CustomerState, Any, float], list[Action]]] = {
            "page_view": self._on_page_view,
            "add_to_cart": self._on_add_to_cart,
            "checkout_start": self._on_checkout,
            "order_placed": self._order,
            "order_returned": self._protect_on("order_returned"),
            "refund": self._protect_on("refund"),
            "support_contact": self._protect_on("support_contact"),
            "message_feedback": self._on_message_feedback,
            "consent": self._on_consent,
        }

    # -- dispatch -----------------------------------------------------------------------------
    def decide(self, cid: str, state: CustomerState, event: Envelope, t: float) -> list[Action]:
        """The actions `event` calls for (most events only update readiness: none)."""
        handler = self._dispatch.get(event.type)
        if handler is None:
            return []
        return handler(cid, state, event, t)

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

    def _on_consent(self, cid: str, state: CustomerState, event: Any, t: float) -> list[Action]:
        """A withdrawal keeps the channel quiet: connectors drop what is pending there."""
        if event.granted or event.channel not in self.policy.consent.required:
            return []
        if not any(entry[2] == event.channel and entry[0] > t for entry in state.scheduled):
            return []  # nothing pending there (a signup without an opt-in is not news)
        quiet = {event.channel: self.policy.consent.withdrawn_quiet_days * 24.0}
        return self._protect_for(cid, state, event, t, "consent_withdrawn", quiet)

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
        r = self.tracker.get(state, t, self.models.aov_prior(self._first_order_value))
        seg = segments_of(self.policy, r)
        verdict = self.arbiter.referee.for_customer(seg, moment)
        ctx = Context(moment, t, state, r, seg, verdict, self.experiments.assign(cid), focus, [])
        return ctx, Decision(cid, event.event_id, moment, t, r, seg, list(verdict.rules))

    def _choose(
        self,
        cid: str,
        event: Envelope,
        slot: str,
        ctx: Context,
        arms: list[Scored],
        offers: list[Offer],
        decision: Decision,
    ) -> tuple[Scored | None, float]:
        """Thompson sampling among the arms and protect (app/bandit.py)."""
        draw = Draw([a.eip for a in arms], [a.spread for a in arms], self._threshold, self._z)
        if self.on_decision is not None:  # explained: the whole distribution
            decision.arms = [
                (arms[i] if i < len(arms) else None, p)
                for i, p in sorted(draw.distribution().items())
            ]

        def resolve(
            sku: str, relation: str, channel: str, frame: str, intensity: str
        ) -> Scored | None:
            offer = next(
                (o for o in offers if o.product.sku == sku and o.relation == relation), None
            )
            product = self.catalog.get(sku)
            if offer is None and product is not None and relation in RELATION_PLAY:
                base = self.catalog.get(ctx.focus[0]) if ctx.focus else None
                offer = Offer(relation, product, base, ctx.state.viewed.get(sku, 0) > 0)
            if offer is None or channel not in self.policy.channels:
                return None
            return self.arbiter.evaluate(ctx, offer, channel, frame, intensity)

        aid = action_id(cid, event.event_id, slot)
        return self.chooser.choose(aid, ctx.moment, arms, draw, resolve)

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
        delivery = self._delivery(state, moment, t)
        channels = self.offers.channels(ctx, delivery)
        offers = self.offers.around(ctx)
        arms = self.arbiter.score(ctx, offers, channels, self._at_stake(state, focus, ctx))
        decision.candidates = ctx.shown if self.arbiter.keep_all else arms
        decision.drops = ctx.drops
        best, propensity = self._choose(cid, event, "decision", ctx, arms, offers, decision)
        if best is None and propensity == NO_ACTION:
            decision.note = "no Action: the followed log made none here"
            self._report(decision)
            return []
        if best is not None:
            actions = [
                self.sequencer.upsell(
                    cid,
                    event,
                    ctx,
                    best,
                    delivery[best.channel],
                    "decision",
                    extra_suppress,
                    propensity,
                )
            ]
            decision.chosen = best
            follow = self._followup(cid, event, ctx, best, propensity)
            if follow is not None:
                actions.append(follow)
        else:
            actions = [self.sequencer.protect(cid, event, ctx, extra_suppress, propensity)]
        if reuse_key is not None:
            ttl = self.policy.channels[self.policy.moments[moment].channels[0]].ttl_hours
            state.live[reuse_key] = [t + ttl * HOUR]
            prune_live(state, t)
        decision.actions = actions
        self._report(decision)
        return actions

    def _order(self, cid: str, state: CustomerState, event: Any, t: float) -> list[Action]:
        skus = {item.sku for item in event.items}
        cancel = cancellations(state, skus, t)
        self._last = None  # set again only by this order's own post-purchase moment
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
            # (read through a call: mypy narrows self._last to the None set above, and mypyc
            # would compile that narrowing in)
            action = self._schedule_refill(cid, state, event, t, sku, self._latest())
            if action is not None:
                actions.append(action)
        return actions

    def _latest(self) -> Context | None:
        return self._last

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
        if base is not None and base.state is state and base.t == t:
            r = replace(base.readiness, maturity=seq.refill_due_from, due_consumable=sku)
            verdict = self.arbiter.referee.for_customer(base.segments, "refill")
            ctx = Context("refill", t, state, r, base.segments, verdict, base.assignment, [sku], [])
            decision = Decision(
                cid, event.event_id, "refill", t, r, base.segments, list(verdict.rules)
            )
        else:
            ctx, decision = self._context(cid, state, event, t, "refill", [sku])
            ctx.readiness = replace(ctx.readiness, maturity=seq.refill_due_from, due_consumable=sku)
            decision.readiness = ctx.readiness
        delivery = self._delivery(state, "refill", due)
        channels = self.offers.channels(ctx, delivery)
        refill_offers = self.offers.refill_offers(sku)
        arms = self.arbiter.score(ctx, refill_offers, channels, 0.0)
        decision.candidates = ctx.shown if self.arbiter.keep_all else arms
        decision.drops = ctx.drops
        slot = f"refill:{sku}"
        best, propensity = self._choose(cid, event, slot, ctx, arms, refill_offers, decision)
        if best is None:
            decision.note = "no refill offer worth making"
            self._report(decision)
            return None
        action = self.sequencer.upsell(
            cid, event, ctx, best, delivery[best.channel], slot, None, propensity
        )
        decision.chosen, decision.actions = best, [action]
        self._report(decision)
        return action

    def _followup(
        self, cid: str, event: Envelope, ctx: Context, best: Scored, propensity: float
    ) -> Action | None:
        """An onsite upsell may be followed by an email later, if that is still worth it
        (chosen with the decision it follows, so with its propensity)."""
        wanted = (
            self.policy.sequencing.followup_email_after_onsite
            and best.channel in ONSITE_UPSELL
            and best.offer.play in UPSELL_PLAYS
        )
        at = self.sequencer.delivery_time(ctx.state, "email", ctx.t)
        wanted = wanted and self.offers.channel_open(ctx, "email", at)
        aid = action_id(cid, event.event_id, "followup")
        if not wanted and not self.chooser.follow_up(aid, False):
            return None  # not scored: nothing would be made (a followed log may still want it)
        option = self.arbiter.evaluate(ctx, best.offer, "email", best.frame, "low")
        wanted = wanted and option is not None and option.eip > self._threshold
        if option is None or not self.chooser.follow_up(aid, wanted):
            return None
        return self.sequencer.upsell(cid, event, ctx, option, at, "followup", None, propensity)

    def _protect_trigger(
        self, cid: str, state: CustomerState, event: Envelope, t: float, trigger: str
    ) -> list[Action]:
        quiet = self.policy.protect.get(trigger)
        if quiet is None:
            return []
        return self._protect_for(cid, state, event, t, trigger, quiet)

    def _protect_for(
        self,
        cid: str,
        state: CustomerState,
        event: Envelope,
        t: float,
        trigger: str,
        quiet: dict[str, float],
    ) -> list[Action]:
        r = self.tracker.get(state, t, self.models.aov_prior(self._first_order_value))
        segments = segments_of(self.policy, r)
        suppress = {c: t + h * HOUR for c, h in quiet.items()}
        longest = max(quiet.values(), default=1.0)
        action = self.sequencer.protect_action(
            cid,
            event,
            state,
            t,
            t + longest * HOUR,
            suppress,
            self.experiments.assign(cid),
            segments.key,
            [f"protect:{trigger}", *segments.codes],
            1.0,
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

    # -- helpers ------------------------------------------------------------------------------
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

    def _delivery(self, state: CustomerState, moment: str, t: float) -> dict[str, float]:
        """When an action on each of the moment's channels would land."""
        when = self.sequencer.delivery_time
        return {c: when(state, c, t) for c in self.policy.moments[moment].channels}

    def _report(self, decision: Decision) -> None:
        if self.on_decision is not None:
            self.on_decision(decision)


def _by_value(state: CustomerState) -> list[str]:
    return [sku for sku, _ in sorted(state.cart.items(), key=lambda kv: -kv[1][0] * kv[1][1])]
