"""Attribution: every Action's window, what followed in it, and the Outcome it closes with.

When an Action is made, a window opens in the customer's state. It runs from `not_before`
for the policy's attribution window (72 h by default). What the customer does meanwhile is
joined to it:

    offer / message feedback   naming its action_id (message feedback without one: the
                               latest delivered window on that channel)
    orders                     every order's margin counts in the window (`window_margin`);
                               an order of the offered SKU converts it: the latest delivered
                               window of that SKU the customer engaged with (accept, click)
                               is credited, else the latest delivered one (`last_touch`); the
                               others convert without credit; holdout windows record the
                               purchase the customer made without being asked (the latest
                               one; earlier held-out windows of the item, like the uncredited
                               delivered ones, are `other_touch`); one purchase teaches the
                               models one success
    returns and refunds        of a converted SKU within the return window: margin given
                               back plus handling
    purchases, suppressions    of the offered SKU, or on its channel, before `not_before`:
    and unsubscribes           the Action is cancelled (connectors drop it), never delivered

A window closes on event time: when the customer's next event or the stream's watermark
passes its end; a converted window stays open for returns until the return window ends. Its
Outcome is then queued (`take`) and the Learner (app/learning.py) is told what it teaches.
"""

from __future__ import annotations

import bisect
import heapq
import math
from array import array
from collections.abc import Mapping
from typing import Any, Final, Protocol

from app.actions import build_outcome, utc, was_shown
from app.catalog import Catalog
from app.codec import rounded, shared
from app.distraction import MOMENTS as DISTRACTION_MOMENTS
from app.learning import UPSELL_PLAYS, Learner
from app.models import Models
from app.policy import Policy
from app.readiness import DAY, HOUR, CustomerState
from schemas import Action, OrderPlaced, OrderReturned, Outcome, Refund

# A window, as a list in the customer's state (compact JSON), and its fields' places (Final,
# as the core's other constants: compiled, mypyc puts a Final's value in the code, where any
# other module name is looked up in the module's dict at each use):
ID: Final = 0
DECIDED: Final = 1
START: Final = 2
END: Final = 3
PHASE: Final = 4
PLAY: Final = 5
CHANNEL: Final = 6
SKU: Final = 7
RELATION: Final = 8
FRAME: Final = 9
INTENSITY: Final = 10
HOLDOUT: Final = 11
PROPENSITY: Final = 12
SEGMENT: Final = 13
VERSIONS: Final = 14
LEARN: Final = 15
TALLY: Final = 16
PREDICTED: Final = 17
MOMENT: Final = 18
# PHASE: 0 purchase window, 1 return window (converted). HOLDOUT: "" or the reason held out.
# TALLY: running figures. PREDICTED: [P(accept), P(organic), P(return)] at decision time, or None.
# MOMENT: the decision's moment (older windows have none).
FEEDBACK: Final = 0
CONVERTED: Final = 1
CREDIT: Final = 2
QTY: Final = 3
REVENUE: Final = 4
MARGIN: Final = 5
RET_QTY: Final = 6
RET_LOSS: Final = 7
UNSUB: Final = 8
WINDOW_MARGIN: Final = 9
ORDER_ID: Final = 10
ORDER_TOTAL: Final = 11
REFUNDED: Final = 12
RETURNED: Final = 13
COMPLETED: Final = 14
# COMPLETED: for an onsite offer at a distraction moment (app/distraction.py), whether the
# purchase under way was told: 0 not yet, 1 completed in time, 2 not.
_CREDIT: Final = ("none", "last_touch", "other_touch")
_ONSITE_OFFERS: Final = frozenset({"onsite_pdp", "onsite_cart"})
_ENGAGED: Final = frozenset({"accept", "click"})  # feedback that names the offer taken up


# A window's text: in a state read back from bytes, every window holds a string of its own for
# each (`share_text`)
_TEXT: Final = (PLAY, CHANNEL, SKU, RELATION, FRAME, INTENSITY, HOLDOUT, SEGMENT, VERSIONS, MOMENT)


def share_text(state: CustomerState) -> None:
    """One copy of each play, channel, SKU, frame... for every window in memory: a state read
    back from bytes holds about ten strings of its own per window (some 500 bytes of a
    window's 1.8 KB), for as long as it stays in memory."""
    for entry in state.windows:
        for i in _TEXT:
            if i < len(entry):
                text = entry[i]
                if type(text) is str:
                    entry[i] = shared(text)


def _tally() -> list[Any]:
    return [{}, False, 0, 0, 0.0, 0.0, 0, 0.0, 0.0, 0.0, "", 0.0, 0.0, False, 0]


class Schedule:
    """The ends of the open windows of every customer in memory or dropped since, given back
    in order of (end, customer), each as often as it was added: what one heap of every
    (end, customer) pair gives, in about half the memory. The heap holds a customer's earliest
    end; the others wait in an array of the customer's (a cold customer's five windows took
    440 bytes as pairs, now about 260).

    An end earlier than a customer's earliest goes on the heap too, and the entry it displaced
    stays there, noted in `_waiting`: when the customer's ends come back to its value, that
    entry serves again, so a customer has at most one heap entry per end it holds. Ends taken
    off together (`drop_before`) leave their entries on the heap, passed over when they come
    up."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, str]] = []
        # customer -> its ends, ascending (`array[float]` is only read by mypy: annotations
        # are not evaluated, and array is not subscriptable at run time on Python 3.11)
        self._ends: dict[str, array[float]] = {}
        # customer -> the values of their displaced heap entries, each later one smaller
        # (every one of them still among the customer's ends, above the earliest)
        self._waiting: dict[str, list[float]] = {}

    def __len__(self) -> int:
        return sum(len(ends) for ends in self._ends.values())

    def customers(self) -> list[str]:
        return list(self._ends)

    def entries(self) -> int:
        """Entries on the heap (about one a customer)."""
        return len(self._heap)

    def add(self, end: float, customer_id: str) -> None:
        ends = self._ends.get(customer_id)
        if ends is None:
            self._ends[customer_id] = array("d", (end,))
            heapq.heappush(self._heap, (end, customer_id))
            return
        if end < ends[0]:  # a new earliest: on the heap too; the old entry waits there
            self._waiting.setdefault(customer_id, []).append(ends[0])
            heapq.heappush(self._heap, (end, customer_id))
        bisect.insort(ends, end)

    def pop_first(self, t: float) -> tuple[float, str] | None:
        """Take the first (end, customer) before `t` off (None: no end is before `t`)."""
        if not self.first_before(t):
            return None
        end, cid = heapq.heappop(self._heap)
        ends = self._ends[cid]
        del ends[0]
        if ends:
            self._chain(cid, ends[0])
        else:
            del self._ends[cid]
        return end, cid

    def _chain(self, customer_id: str, earliest: float) -> None:
        """Give the customer's earliest end an entry on the heap: its displaced entry of that
        value serves again if it has one."""
        waiting = self._waiting.get(customer_id)
        if waiting and waiting[-1] == earliest:
            waiting.pop()
            if not waiting:
                del self._waiting[customer_id]
        else:
            heapq.heappush(self._heap, (earliest, customer_id))

    def first_before(self, t: float) -> bool:
        """Whether an end before `t` waits (on top of the heap, once those whose ends were
        taken are passed over)."""
        heap, by_customer = self._heap, self._ends
        while heap and heap[0][0] < t:
            end, cid = heap[0]
            ends = by_customer.get(cid)
            if ends is not None and ends[0] == end:
                return True
            heapq.heappop(heap)  # (its ends were taken: `drop_before`)
        return False

    def owes(self, customer_id: str, t: float) -> int:
        """How many of the customer's ends are before `t`."""
        ends = self._ends.get(customer_id)
        return 0 if ends is None else bisect.bisect_left(ends, t)

    def drop_before(self, customer_id: str, t: float) -> float | None:
        """Take the customer's ends before `t` off; the latest of them (None: none was).
        Their heap entries stay, passed over when they come up."""
        ends = self._ends.get(customer_id)
        if ends is None or not ends[0] < t:
            return None
        k = bisect.bisect_left(ends, t)
        latest = ends[k - 1]
        del ends[:k]
        waiting = self._waiting.pop(customer_id, None)
        if not ends:
            del self._ends[customer_id]
            return latest
        if waiting:  # (entries of values taken off are passed over too)
            kept = [v for v in waiting if v >= ends[0]]
            if kept:
                self._waiting[customer_id] = kept
        self._chain(customer_id, ends[0])
        return latest


class States(Protocol):
    """Customers' states by id, as closing windows reads them."""

    def get(self, customer_id: str, /) -> CustomerState | None: ...


class Attribution:
    """Keeps every customer's open windows and the event-time schedule of their ends."""

    def __init__(self, policy: Policy, catalog: Catalog, models: Models, learner: Learner) -> None:
        self.policy = policy
        self.catalog = catalog
        self.models = models  # carries the watermark, so it is checkpointed with them
        self.learner = learner
        self.window_s = policy.attribution.window_hours * HOUR
        self.return_window_s = policy.attribution.return_window_days * DAY
        self.max_open = policy.attribution.max_open
        self.handling = policy.return_handling_cost
        self.default_margin_rate = policy.priors.value.margin_rate
        self.channel_cost = {c: spec.cost for c, spec in policy.channels.items()}
        self.outbound = frozenset(c for c, spec in policy.channels.items() if spec.outbound)
        self.subscriber_value = {c: spec.subscriber_value for c, spec in policy.channels.items()}
        self.completion_s = policy.distraction.completion_hours * HOUR
        # Every open window's end, by customer (under one string of their id: `shared`)
        self._schedule = Schedule()
        # Entries of the schedule `advance` may still close (None: every one that ended): the
        # worker's bound per batch, so one batch never thaws and checkpoints every customer
        # behind a leap of the watermark (app/pipeline.py). Replay closes all at once.
        self.close_limit: int | None = None
        # The ends on the schedule before the watermark are owed (passed, not closed yet: left
        # by `close_limit`). A window added with an end before it (made for an event older
        # than the watermark, or reloaded) waits here for the watermark's next move, as it
        # would without a bound.
        self._late: list[tuple[float, str]] = []
        self._closed: list[Outcome] = []

    # -- opening ------------------------------------------------------------------------------
    def open(
        self,
        state: CustomerState,
        action: Action,
        t: float,
        start: float,
        relation: str,
        segment: str,
        held_out: str,
        learn: list[Any] | None,
        predicted: list[float] | None = None,
        moment: str = "",
    ) -> None:
        """A window for `action`, decided at `t`, deliverable from `start`; `predicted` holds
        what the engine expected of it (P(accept), P(organic), P(return)), for calibration."""
        entry: list[Any] = [
            action.action_id,
            t,
            start,
            start + self.window_s,
            0,
            action.play,
            action.channel,
            action.offer_sku,
            relation,
            action.frame,
            action.intensity,
            held_out,
            action.propensity,
            segment,
            f"{action.policy_version}|{action.model_version}",
            learn,
            _tally(),
            predicted,
            moment,
        ]
        if len(state.windows) >= self.max_open:
            self._emit(action.customer_id, state.windows.pop(0), t, "evicted")
        state.windows.append(entry)
        if action.play == "assist":
            state.assisted = max(state.assisted, t)
        self._add(entry[END], shared(action.customer_id))

    def _add(self, end: float, customer_id: str) -> None:
        if end < self.models.watermark:  # (owed from its next move)
            self._late.append((end, customer_id))
        else:
            self._schedule.add(end, customer_id)

    def reopen(self, customer_id: str, state: CustomerState) -> None:
        """Put a reloaded customer's open windows back on the schedule."""
        cid = shared(customer_id)
        for entry in state.windows:
            self._add(entry[END], cid)

    def take_schedule(self, other: Attribution) -> None:
        """Take over the schedule of another instance (the engine rewired for new models):
        the windows of every customer in memory, as reopening each would put them back, and
        perhaps entries of customers dropped since, which closing passes over."""
        self._schedule = other._schedule
        self._late = other._late

    # -- what follows -------------------------------------------------------------------------
    def ordered(self, cid: str, state: CustomerState, order: OrderPlaced, t: float) -> None:
        if not state.windows:
            return
        margin = sum(self._margin(i.sku, i.price) * i.qty for i in order.items)
        bought: dict[str, tuple[int, float]] = {}
        for item in order.items:
            qty, revenue = bought.get(item.sku, (0, 0.0))
            bought[item.sku] = (qty + item.qty, revenue + item.qty * item.price)
        for entry in state.windows:
            if entry[PHASE] == 0 and entry[START] <= t <= entry[END]:
                entry[TALLY][WINDOW_MARGIN] += margin
            if entry[DECIDED] <= t <= entry[DECIDED] + self.completion_s and (
                len(bought) > 1 or entry[SKU] not in bought
            ):  # the purchase under way (an order of the offered item alone is not it)
                self._completion(entry, True)
        for sku, (qty, revenue) in bought.items():
            self._convert(state, sku, qty, revenue, order, t)
        self._cancel(cid, state, t, lambda e: e[SKU] in bought)

    def _convert(
        self,
        state: CustomerState,
        sku: str,
        qty: int,
        revenue: float,
        order: OrderPlaced,
        t: float,
    ) -> None:
        hits = [
            e
            for e in state.windows
            if e[PHASE] == 0
            and e[SKU] == sku
            and e[START] <= t <= e[END]
            and not e[TALLY][CONVERTED]
        ]
        # The credit: the latest delivered window the customer engaged with (accepted,
        # clicked), else the latest delivered one. It alone is taught the sale, and the
        # latest held-out window alone the purchase made unasked; the others of the item
        # are taught that they did not bring it. Each counted as a success, an item offered
        # three times before one purchase looked three times as likely to sell per offer.
        delivered = [e for e in hits if self._delivered(e)]
        engaged = [e for e in delivered if _ENGAGED & e[TALLY][FEEDBACK].keys()]
        last = max(engaged or delivered, key=lambda e: e[START]) if delivered else None
        held = [e for e in hits if e[PLAY] in UPSELL_PLAYS and not self._delivered(e)]
        last_held = max(held, key=lambda e: e[START]) if held else None
        for entry in hits:
            tally = entry[TALLY]
            tally[CONVERTED] = True
            tally[ORDER_ID] = order.order_id  # returns are joined by it
            if entry is last:
                tally[CREDIT] = 1
                tally[QTY], tally[REVENUE] = qty, revenue
                tally[MARGIN] = revenue - qty * self._unit_cost(sku, revenue / qty)
                tally[ORDER_TOTAL] = order.total
            elif self._delivered(entry) or (entry in held and entry is not last_held):
                tally[CREDIT] = 2  # another window of the item took the purchase
            self._learn_purchase(entry, entry is last or entry is last_held)
            self._completion(entry, False)  # no order in time, or it was counted just now
            entry[PHASE] = 1
            entry[END] = t + self.return_window_s
            self._add(entry[END], shared(order.customer_id))

    def offered(self, state: CustomerState, t: float) -> set[str]:
        """SKUs of offers delivered to the customer whose windows are open at `t`."""
        return {
            e[SKU]
            for e in state.windows
            if e[SKU] and e[START] <= t and self._delivered(e) and e[PLAY] != "assist"
        }

    def returned(self, state: CustomerState, event: OrderReturned, t: float) -> None:
        """Items of the order that converted a window came back: its margin is given back,
        with handling (a refund of the same item counted before is replaced, not added to).
        A return of the same SKU from another order is not this window's; only windows
        converted before order ids were kept are joined by SKU alone."""
        for item in event.items:
            for entry in state.windows:
                tally = entry[TALLY]
                if entry[PHASE] != 1 or entry[SKU] != item.sku or t > entry[END]:
                    continue
                if tally[ORDER_ID] and tally[ORDER_ID] != event.order_id:
                    continue
                if not tally[RETURNED]:
                    tally[RETURNED] = True
                    if self._delivered(entry) and entry[PLAY] in UPSELL_PLAYS:
                        self.learner.kept(entry[LEARN], True)
                if tally[CREDIT] == 1 and tally[RET_QTY] < tally[QTY]:
                    qty = min(item.qty, tally[QTY] - tally[RET_QTY])
                    tally[RET_QTY] += qty
                    tally[RET_LOSS] += qty * (tally[MARGIN] / tally[QTY] + self.handling)
                    # money already refunded for these items was the return's, not a loss
                    refunded = min(tally[REFUNDED], qty * tally[REVENUE] / tally[QTY])
                    tally[REFUNDED] -= refunded
                    tally[RET_LOSS] -= refunded

    def refunded(self, state: CustomerState, event: Refund, t: float) -> None:
        """A refund of a credited order without a return of the SKU: its share is lost."""
        for entry in state.windows:
            tally = entry[TALLY]
            if entry[PHASE] != 1 or tally[ORDER_ID] != event.order_id or t > entry[END]:
                continue
            if tally[RET_QTY] or tally[ORDER_TOTAL] <= 0:
                continue  # the return already counted what was given back
            share = event.amount * tally[REVENUE] / tally[ORDER_TOTAL]
            lost = min(share, tally[REVENUE] - tally[REFUNDED])
            tally[REFUNDED] += lost
            tally[RET_LOSS] += lost

    def feedback(
        self,
        cid: str,
        state: CustomerState,
        kind: str,
        t: float,
        action_id: str | None,
        channel: str | None,
    ) -> str | None:
        """Offer or message feedback: counted on the window it names (or the latest delivered
        one on its channel); an unsubscribe costs the channel's subscriber value once, and
        cancels what is still pending on that channel. Returns the channel of the window an
        unsubscribe (or complaint) was charged to now, if one was."""
        entry = self._find(state, action_id, channel, t)
        charged = None
        if entry is not None:
            counts = entry[TALLY][FEEDBACK]
            counts[kind] = counts.get(kind, 0) + 1
            if kind in ("unsubscribe", "complaint") and not entry[TALLY][UNSUB]:
                entry[TALLY][UNSUB] = self.subscriber_value.get(entry[CHANNEL], 0.0)
                charged = entry[CHANNEL]
            if kind == "expired":
                _uncredit(entry[TALLY])
        if kind in ("unsubscribe", "complaint") and channel is not None:
            self._cancel(cid, state, t, lambda e: e[CHANNEL] == channel)
        return charged

    def suppressed(
        self, cid: str, state: CustomerState, channel: str, until: float, t: float
    ) -> None:
        """A suppression cancels pending Actions on that channel due before it ends."""
        self._cancel(cid, state, t, lambda e: e[CHANNEL] == channel and e[START] < until)

    def _find(
        self, state: CustomerState, action_id: str | None, channel: str | None, t: float
    ) -> list[Any] | None:
        if action_id is not None:
            return next((e for e in state.windows if e[ID] == action_id), None)
        if channel is None:
            return None
        found = [
            e
            for e in state.windows
            if e[CHANNEL] == channel and e[START] <= t and self._delivered(e)
        ]
        return max(found, key=lambda e: e[START]) if found else None

    def _cancel(self, cid: str, state: CustomerState, t: float, which: Any) -> None:
        pending = [e for e in state.windows if e[START] > t and e[PLAY] != "protect" and which(e)]
        for entry in pending:
            state.windows.remove(entry)
            self._emit(cid, entry, t, "cancelled")

    # -- closing ------------------------------------------------------------------------------
    def close_due(self, cid: str, state: CustomerState, t: float) -> None:
        """Close every window of this customer that ended before `t`, and those the watermark
        passed that still wait (`close_limit`): an order read now must not count in a window
        the watermark passed before it was read, closed yet or not."""
        owed = self._schedule.drop_before(cid, self.models.watermark)
        if owed is not None and owed >= t:
            t = math.nextafter(owed, math.inf)
        if state.windows and any(e[END] < t for e in state.windows):
            self._close(cid, state, t)

    def advance(self, t: float, customers: States) -> None:
        """Move the watermark to `t` and close the windows that ended before it, in order of
        their ends (so the models learn in the same order whatever the schedule holds;
        customers not in memory close on their next event). `customers.get` gives a state
        (the engine's makes a cold customer's state again). With `close_limit`, at most that
        many entries of the schedule of customers in memory are closed (counted down; those of
        customers not in memory are passed over at no cost): the others wait on the schedule,
        owed, for the next calls, even ones that do not move the watermark (`behind`), or for
        the customer's own event or checkpoint (`close_due`). What the watermark passed stays on
        the schedule until it is closed (a leap past 430,000 ends took them all into a list).
        The watermark lowered (`DecisionEngine.set_clocks`: a partition whose clock is behind)
        owes only what it has passed."""
        schedule = self._schedule
        watermark = self.models.watermark
        if t > watermark:
            watermark = self.models.watermark = t
            late, self._late = self._late, []
            for end, cid in late:
                schedule.add(end, cid)
        while self.close_limit is None or self.close_limit > 0:
            taken = schedule.pop_first(watermark)
            if taken is None:
                return
            until, cid = taken
            state = customers.get(cid)
            if state is None:  # (not in memory: closed when loaded, at no cost now)
                continue
            if self.close_limit is not None:
                self.close_limit -= 1
            after = math.nextafter(until, math.inf)
            schedule.drop_before(cid, after)  # (other windows of theirs ending then: closed too)
            if state.windows:
                self._close(cid, state, after)  # ends <= until

    def owes(self, customer_id: str) -> int:
        """How many windows of the customer the watermark passed wait to be closed."""
        return self._schedule.owes(customer_id, self.models.watermark)

    def behind(self) -> bool:
        """Whether windows the watermark passed wait to be closed (left by `close_limit`)."""
        return self._schedule.first_before(self.models.watermark)

    def _close(self, cid: str, state: CustomerState, before: float) -> None:
        """Close the windows that ended before `before`."""
        self.models.subject = cid  # (what they teach goes with this customer's state)
        kept = []
        for entry in state.windows:
            if entry[END] < before:
                self._finish(entry)
                self._emit(cid, entry, entry[END], "closed")
            else:
                kept.append(entry)
        state.windows = kept

    def flush(self, customers: Mapping[str, CustomerState], t: float) -> None:
        """The stream ended: every window still open closes as censored (what is known)."""
        for cid, state in customers.items():
            for entry in state.windows:
                self._emit(cid, entry, t, "censored")
            state.windows = []
        self._schedule = Schedule()
        self._late = []

    def take(self) -> list[Outcome]:
        """The Outcomes closed since the last call."""
        out, self._closed = self._closed, []
        return out

    def requeue(self, outcomes: list[Outcome]) -> None:
        """Outcomes taken from another instance, not yet handed on (kept first in line)."""
        self._closed = [*outcomes, *self._closed]

    def _completion(self, entry: list[Any], completed: bool) -> None:
        """Tell the learner, once, whether the purchase under way at an onsite offer's
        decision completed in time (delivered or held out: app/distraction.py)."""
        tally = entry[TALLY]
        if (
            len(entry) <= MOMENT
            or entry[MOMENT] not in DISTRACTION_MOMENTS
            or entry[CHANNEL] not in _ONSITE_OFFERS
            or entry[PLAY] == "protect"
            or len(tally) <= COMPLETED
            or tally[COMPLETED]
        ):
            return
        tally[COMPLETED] = 1 if completed else 2
        self.learner.completion(
            entry[MOMENT], entry[PLAY], entry[INTENSITY], self._delivered(entry), completed
        )

    def _finish(self, entry: list[Any]) -> None:
        """What a window that ran its course teaches."""
        tally = entry[TALLY]
        self._completion(entry, False)
        if entry[PHASE] == 1:
            if self._delivered(entry) and entry[PLAY] in UPSELL_PLAYS and not tally[RETURNED]:
                self.learner.kept(entry[LEARN], False)
        elif entry[PLAY] == "assist":
            feedback = tally[FEEDBACK]
            if self._delivered(entry) and was_shown(entry[CHANNEL], feedback, self.outbound):
                engaged = "click" in feedback or "accept" in feedback
                self.learner.engagement(
                    entry[LEARN],
                    entry[CHANNEL],
                    entry[FRAME],
                    entry[INTENSITY],
                    entry[SEGMENT],
                    engaged,
                )
        else:
            self._learn_purchase(entry, False)

    def _learn_purchase(self, entry: list[Any], bought: bool) -> None:
        if entry[LEARN] is None or entry[PLAY] not in UPSELL_PLAYS:
            return
        self.learner.purchase(
            entry[LEARN],
            entry[PLAY],
            entry[CHANNEL],
            entry[RELATION],
            entry[FRAME],
            entry[INTENSITY],
            self._delivered(entry),
            entry[SEGMENT],
            bought,
        )

    def _emit(self, cid: str, entry: list[Any], at: float, status: str) -> None:
        tally = entry[TALLY]
        delivered = status != "cancelled" and self._delivered(entry)
        cost = self.channel_cost.get(entry[CHANNEL], 0.0) if delivered else 0.0
        unsub = tally[UNSUB]
        policy_version, model_version = entry[VERSIONS].split("|", 1)
        predicted = entry[PREDICTED] if len(entry) > PREDICTED else None
        p_accept, p_organic, p_return = predicted if predicted else (None, None, None)
        decided_s, start_s, closed_s = entry[DECIDED], entry[START], max(at, entry[DECIDED])
        end_s = start_s + self.window_s
        decided = utc(decided_s)
        start = decided if start_s == decided_s else utc(start_s)
        end = utc(end_s)
        self._closed.append(
            build_outcome(
                {
                    "action_id": entry[ID],
                    "customer_id": cid,
                    "decided_at": decided,
                    "window_start": start,
                    "window_end": end,
                    "closed_at": end if closed_s == end_s else utc(closed_s),
                    "status": status,
                    "play": entry[PLAY],
                    "channel": entry[CHANNEL],
                    "offer_sku": entry[SKU],
                    "frame": entry[FRAME],
                    "intensity": entry[INTENSITY],
                    "holdout": bool(entry[HOLDOUT]),
                    "propensity": entry[PROPENSITY],
                    "segment": entry[SEGMENT],
                    "delivered": delivered,
                    "feedback": dict(tally[FEEDBACK]),
                    "converted": bool(tally[CONVERTED]),
                    "attribution": _CREDIT[tally[CREDIT]],
                    "quantity": tally[QTY],
                    "revenue": rounded(tally[REVENUE], 4),
                    "margin": rounded(tally[MARGIN], 4),
                    "returned_quantity": tally[RET_QTY],
                    "return_loss": rounded(tally[RET_LOSS], 4),
                    "channel_cost": cost,
                    "unsubscribe_cost": unsub,
                    "profit": rounded(tally[MARGIN] - tally[RET_LOSS] - cost - unsub, 4),
                    "window_margin": rounded(tally[WINDOW_MARGIN], 4),
                    "window_profit": rounded(
                        tally[WINDOW_MARGIN] - tally[RET_LOSS] - cost - unsub, 4
                    ),
                    "policy_version": policy_version,
                    "model_version": model_version,
                    "predicted_accept": p_accept,
                    "predicted_organic": p_organic,
                    "returns_matched_by": (
                        ("order" if tally[ORDER_ID] else "sku") if tally[CONVERTED] else None
                    ),
                    "predicted_return": p_return,
                }
            )
        )

    # -- helpers ------------------------------------------------------------------------------
    @staticmethod
    def _delivered(entry: list[Any]) -> bool:
        """Sent to a connector and not reported back as expired undelivered."""
        return (
            not entry[HOLDOUT]
            and entry[PLAY] != "protect"
            and "expired" not in entry[TALLY][FEEDBACK]
        )

    def _unit_cost(self, sku: str, price: float) -> float:
        product = self.catalog.get(sku)
        if product is not None:
            return product.unit_cost
        return price * (1.0 - self.default_margin_rate)

    def _margin(self, sku: str, price: float) -> float:
        return price - self._unit_cost(sku, price)


def _uncredit(tally: list[Any]) -> None:
    """An Action reported expired undelivered after its item was bought (the receipt came
    after the order): the purchase was not its doing. No credit, margin or return loss;
    what P(accept) learned of it at the purchase stays learned (rare: the receipt usually
    comes first)."""
    if tally[CREDIT]:
        tally[CREDIT] = 0
        tally[QTY], tally[REVENUE], tally[MARGIN], tally[ORDER_TOTAL] = 0, 0.0, 0.0, 0.0
        tally[RET_QTY], tally[RET_LOSS], tally[REFUNDED] = 0, 0.0, 0.0
