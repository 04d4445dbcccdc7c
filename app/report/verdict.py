"""The report's answer first, in words: did tact add profit, and if it cannot tell yet, what
it would take to tell.

    added / lost    the 95% interval of incremental profit per customer (treated - holdout)
                    excludes 0: "tact added +X per customer (95% interval ...)"
    undecided       it includes 0: the smallest effect this traffic resolves (80% power, 5%
                    two-sided: 2.8 standard errors, the standard error read off the bootstrap
                    interval), and how many more customers (and days, at the period's pace)
                    it takes to resolve the effect in question: what the Actions' outcomes
                    claim per customer, else the estimate itself
    no_delivery     nothing was delivered (a file replay decides but sends nothing): there is
                    no incremental figure to measure, and none is shown as if it were
    no_outcome      no Outcome at all yet (a live run younger than its attribution windows):
                    likewise nothing to measure yet
    no_holdout      no customer is in the holdout: incrementality cannot be measured
"""

from __future__ import annotations

import math
from typing import Any

_Z = 1.96  # the 95% interval's half-width in standard errors
_POWER = 2.8  # 1.96 + 0.84: a difference of this many standard errors is found 80% of the time


def verdict(
    estimate: dict[str, Any] | None,
    days: float,
    claimed: float | None = None,
    subject: str = "tact",
) -> dict[str, Any]:
    """The verdict on one estimate (`Estimate.as_dict()`, or None) over `days` of traffic;
    `claimed` is what the Actions' outcomes attribute per customer (the effect to resolve)."""
    if not estimate:
        return {
            "kind": "no_holdout",
            "text": f"{subject}: no customer held out, so what it "
            "adds cannot be measured (set a holdout share in the policy).",
        }
    value, low, high = estimate["value"], estimate["low"], estimate["high"]
    interval = f"95% interval {low:+,.2f} to {high:+,.2f}"
    n = int(estimate["treated_n"]) + int(estimate["control_n"])
    share = estimate["control_n"] / n if n else 0.0
    out: dict[str, Any] = {"value": value, "low": low, "high": high, "holdout_share": share}
    if low > 0 or high < 0:
        word = "added" if low > 0 else "lost"
        out.update(
            kind=word,
            text=f"{subject} {word} {abs(value):,.2f} per customer ({interval}; "
            f"{estimate['treated_n']:,} customers treated, {estimate['control_n']:,} held out).",
        )
        return out
    se = (high - low) / (2 * _Z)
    resolvable = _POWER * se
    target = claimed if claimed is not None and claimed > 0 else abs(value)
    out.update(kind="undecided", resolvable=resolvable, target=target)
    text = (
        f"{subject}: not yet distinguishable from zero ({value:+,.2f} per customer, {interval}). "
        f"With this traffic ({n:,} customers, {share:.0%} held out) it resolves effects of about "
        f"{resolvable:,.2f} per customer"
    )
    if target > 0 and se > 0:
        factor = (resolvable / target) ** 2  # customers scale with the variance
        more = max(math.ceil(n * (factor - 1.0)), 0)
        more_days = days * max(factor - 1.0, 0.0)
        out.update(more_customers=more, more_days=more_days)
        what = "what the Actions claim" if target == claimed else "this estimate"
        text += (
            f"; to resolve {target:,.2f} per customer ({what}) it needs about {more:,} more "
            f"customers, {more_days:,.0f} more days at this pace."
            if more
            else f": an effect of {target:,.2f} per customer ({what}) would likely have shown"
            " (80% power), so it is probably smaller."
        )
    else:
        text += "."
    out["text"] = text
    return out


UNMEASURED = frozenset({"no_delivery", "no_outcome"})  # kinds with no incremental figure


def _unmeasured(kind: str, text: str) -> dict[str, Any]:
    """A verdict of a kind in UNMEASURED: why, and that the figures are decisions only."""
    return {
        "kind": kind,
        "text": f"{text}; the figures below are what was decided, not what it earned.",
    }


def nothing_delivered(subject: str = "tact") -> dict[str, Any]:
    return _unmeasured(
        "no_delivery",
        f"{subject}: no Action was delivered in this data (a file replay decides but sends "
        "nothing; a lagging worker sends its Actions already expired, reason stale), so there "
        "is no incremental profit to measure",
    )


def no_outcome_yet(subject: str = "tact") -> dict[str, Any]:
    return _unmeasured(
        "no_outcome",
        f"{subject}: no Outcome in this data yet. An Action's Outcome is written when its "
        "attribution window closes (the policy's attribution.window_hours after it was "
        "decided, 72 h by default), so a report of a live run counts what it earned from then "
        "on",
    )


def section(
    figures: dict[str, Any], delivered: int, days: float, outcomes: int | None = None
) -> dict[str, Any]:
    """The verdicts of a report: overall, and among the customers chosen for each play and
    channel (treated against held out, as the report's groups). `outcomes`: how many
    Outcomes were read (0: none yet, which is not the same as nothing delivered; read and
    all left out, as for another run's Actions, is `nothing_delivered`'s case)."""
    o = figures["overall"]
    if outcomes == 0:
        return {"overall": no_outcome_yet(), "play": [], "channel": []}
    if not delivered:
        return {"overall": nothing_delivered(), "play": [], "channel": []}
    out: dict[str, Any] = {
        "overall": verdict(
            o["incremental_profit_per_customer"], days, o["attributed_profit_per_customer"]
        )
    }
    for name in ("play", "channel"):
        out[name] = [
            {
                "group": row["group"],
                **verdict(row, days, subject=f"among customers chosen for {row['group']}, tact"),
            }
            for row in figures["groups"].get(name, [])
        ]
    return out
