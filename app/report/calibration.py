"""Calibration: do the engine's predictions match what happened?

Every Outcome carries what the engine predicted when it decided (`predicted_accept`,
`predicted_organic`, `predicted_return`); here they meet what followed.

acceptance   delivered expand and commit offers: P(accept) against an order of the offered
             SKU in the window
assist       delivered assists that were shown (impression, delivered or open feedback):
             P(engaging) against a click or an accept
returns      credited purchases (the Outcome that carries the quantity): P(return) against a
             return of it; over purchases whose return window closed when there are enough
             of them, else over all, and then the observed rates are lower bounds
uplift       expand and commit, delivered against held out (decided the same way, never
             delivered), in equal-count buckets of the predicted uplift
             (P(accept) - P(organic)) over both: observed uplift is the conversion rate of
             the delivered less that of the held out (app/report/uplift.py)

Only Outcomes whose purchase window ran its course count for conversions: those that closed,
or were censored or evicted at or after `window_end` (an Outcome with a purchase stays open
for its return window, so in data shorter than that it ends `censored` with its conversion
known). Cancelled Outcomes (never deliverable) and Outcomes without predictions (written
before they were recorded) are left out, and counted.

Each group: deciles of the prediction (quintiles under 200 outcomes), each with its mean
prediction and the observed rate with a Wilson interval (which takes outcomes as independent:
a customer's are not quite, so read it as a little narrow); the Brier score (and that of
always forecasting the observed rate), the expected calibration error over those bins (|mean
predicted - observed rate| weighted by count) and the AUC.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from app.actions import was_shown
from app.report.stats import auc, brier, equal_parts, wilson
from app.report.uplift import MIN_BUCKET_ARM, Arm, uplift
from schemas.types import event_seconds

UPSELL_PLAYS = ("expand", "commit")
_ENGAGED = ("click", "accept")
MIN_SCORED = 30  # outcomes for a group's figures
MIN_DECILES = 200  # outcomes for deciles rather than quintiles
MIN_CLOSED_RETURNS = 100  # purchases with a closed return window to score those alone


@dataclass(frozen=True, slots=True)
class Bin:
    """Forecasts grouped by their size: how many, their mean, the observed rate [95%]."""

    count: int
    predicted: float
    observed: float
    low: float
    high: float

    def as_dict(self) -> dict[str, float | int]:
        return {
            "count": self.count,
            "predicted": self.predicted,
            "observed": self.observed,
            "low": self.low,
            "high": self.high,
        }


@dataclass(slots=True)
class Pairs:
    """Forecasts and what happened, side by side."""

    predicted: list[float] = field(default_factory=list)
    observed: list[bool] = field(default_factory=list)

    def add(self, predicted: float, observed: bool) -> None:
        self.predicted.append(predicted)
        self.observed.append(observed)

    def __len__(self) -> int:
        return len(self.predicted)


def equal_count_bins(predicted: Sequence[float], observed: Sequence[bool], k: int) -> list[Bin]:
    """k bins of (nearly) equal count by rank of the forecast (ties keep their input order)."""
    order = sorted(range(len(predicted)), key=predicted.__getitem__)
    bins = []
    for part in equal_parts(order, k):
        hits = sum(1 for i in part if observed[i])
        rate, low, high = wilson(hits, len(part))
        mean = sum(predicted[i] for i in part) / len(part)
        bins.append(Bin(len(part), mean, rate, low, high))
    return bins


def expected_calibration_error(bins: Sequence[Bin]) -> float:
    """|mean forecast - observed rate| per bin, weighted by the bin's count."""
    n = sum(b.count for b in bins)
    return sum(b.count * abs(b.predicted - b.observed) for b in bins) / n if n else 0.0


def reliability(predicted: Sequence[float], observed: Sequence[bool]) -> dict[str, Any] | None:
    """A group's figures (see the module); None under MIN_SCORED forecasts."""
    n = len(predicted)
    if n < MIN_SCORED:
        return None
    bins = equal_count_bins(predicted, observed, 10 if n >= MIN_DECILES else 5)
    positives = sum(observed)
    rate = positives / n
    return {
        "n": n,
        "positives": positives,
        "mean_predicted": sum(predicted) / n,
        "observed": rate,
        "brier": brier(predicted, observed),
        "brier_base_rate": rate * (1.0 - rate),
        "ece": expected_calibration_error(bins),
        "auc": auc(predicted, observed),
        "binning": "deciles" if len(bins) == 10 else "quintiles",
        "bins": [b.as_dict() for b in bins],
    }


def _probability(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if 0.0 <= value <= 1.0 else None


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def window_ran(outcome: dict[str, Any]) -> bool:
    """The purchase window ran its course: closed, or censored or evicted at or after its end."""
    status = outcome.get("status")
    if status == "closed":
        return True
    if status not in ("censored", "evicted"):
        return False
    try:
        return event_seconds(outcome["closed_at"]) >= event_seconds(outcome["window_end"])
    except (KeyError, TypeError, ValueError):
        return False


@dataclass(slots=True)
class _Groups:
    accept: Pairs = field(default_factory=Pairs)
    by_play: dict[str, Pairs] = field(default_factory=dict)
    assist: Pairs = field(default_factory=Pairs)
    returns_closed: Pairs = field(default_factory=Pairs)
    returns_open: Pairs = field(default_factory=Pairs)
    treated: Arm = field(default_factory=Arm)
    held_out: Arm = field(default_factory=Arm)
    counts: Counter[str] = field(default_factory=Counter)


def _collect(outcomes: Iterable[dict[str, Any]]) -> _Groups:
    g = _Groups()
    for o in outcomes:
        play = o.get("play")
        if play not in (*UPSELL_PLAYS, "assist") or o.get("status") == "cancelled":
            continue
        g.counts["outcomes"] += 1
        p_accept = _probability(o.get("predicted_accept"))
        p_organic = _probability(o.get("predicted_organic"))
        p_return = _probability(o.get("predicted_return"))
        if p_accept is None or p_organic is None or p_return is None:
            g.counts["without_predictions"] += 1
            continue
        delivered, converted = o.get("delivered") is True, o.get("converted") is True
        # one success per purchase, as the models learn it: a later window of the item took it
        counted = converted and o.get("attribution") != "other_touch"
        customer = o.get("customer_id")
        customer = customer if isinstance(customer, str) else ""
        if delivered and converted and _count(o.get("quantity")) > 0:
            returns = g.returns_closed if o.get("status") == "closed" else g.returns_open
            returns.add(p_return, _count(o.get("returned_quantity")) > 0)
        if not window_ran(o):
            g.counts["window_open"] += 1
            continue
        g.counts["scored"] += 1
        if play == "assist":
            feedback = o.get("feedback")
            seen = feedback if isinstance(feedback, dict) else {}
            if delivered and was_shown(str(o.get("channel")), seen):
                g.assist.add(p_accept, any(k in seen for k in _ENGAGED))
            continue
        if delivered:
            g.accept.add(p_accept, counted)
            g.by_play.setdefault(str(play), Pairs()).add(p_accept, counted)
            g.treated.add(p_accept - p_organic, counted, customer)
        elif o.get("holdout") is True:
            g.held_out.add(p_accept - p_organic, counted, customer)
    return g


def section(outcomes: Iterable[dict[str, Any]], seed: int = 0) -> dict[str, Any]:
    """The calibration figures of a report, from its Outcome records (plain dicts); `seed`
    seeds the uplift bootstrap."""
    g = _collect(outcomes)
    notes = []
    if g.counts["without_predictions"] == g.counts["outcomes"]:
        return {
            "outcomes": dict(g.counts),
            "accept": None,
            "assist": None,
            "returns": None,
            "uplift": None,
            "notes": [
                "no Outcome yet: nothing to calibrate"
                if not g.counts["outcomes"]
                else "no outcome carries the engine's predictions (written before they were "
                "recorded): nothing to calibrate"
            ],
        }
    if g.counts["without_predictions"]:
        notes.append(
            f"{g.counts['without_predictions']:,} of {g.counts['outcomes']:,} outcomes carry no "
            "predictions (written before they were recorded): left out"
        )
    if g.counts["window_open"]:
        notes.append(
            f"{g.counts['window_open']:,} outcomes' purchase windows were still open when the "
            "data ended: left out of acceptance and uplift"
        )
    closed, still_open = len(g.returns_closed), len(g.returns_open)
    if closed >= MIN_CLOSED_RETURNS:
        returns = reliability(g.returns_closed.predicted, g.returns_closed.observed)
    else:
        returns = reliability(
            g.returns_closed.predicted + g.returns_open.predicted,
            g.returns_closed.observed + g.returns_open.observed,
        )
        if returns is not None and still_open:
            notes.append(
                f"return windows still open for {still_open:,} of {closed + still_open:,} "
                "purchases: observed return rates are lower bounds"
            )
    if returns is not None:
        returns["return_windows"] = {"closed": closed, "open": still_open}
    accept = reliability(g.accept.predicted, g.accept.observed)
    if accept is not None:
        accept["by_play"] = {
            play: {
                "n": len(p),
                "mean_predicted": sum(p.predicted) / len(p),
                "observed": sum(p.observed) / len(p),
            }
            for play, p in sorted(g.by_play.items())
        }
    lift = uplift(g.treated, g.held_out, seed)
    g.counts["uplift_delivered"], g.counts["uplift_held_out"] = len(g.treated), len(g.held_out)
    if lift is None:
        notes.append(
            f"uplift needs at least {5 * MIN_BUCKET_ARM} delivered and held-out expand and commit "
            f"outcomes: {len(g.treated):,} delivered, {len(g.held_out):,} held out"
        )
    else:
        thin = sum(not b["enough"] for b in lift["buckets"])
        if thin:
            notes.append(
                f"{thin} of {len(lift['buckets'])} uplift buckets have fewer than "
                f"{MIN_BUCKET_ARM} delivered or held-out outcomes: the holdout is too small "
                "there, their observed uplift is left out of the trend"
            )
    return {
        "outcomes": dict(g.counts),
        "accept": accept,
        "assist": reliability(g.assist.predicted, g.assist.observed),
        "returns": returns,
        "uplift": lift,
        "notes": notes,
    }
