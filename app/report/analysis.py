"""The figures of `tact report`, from ReportData (app/report/data.py).

incremental profit per customer   treated - global holdout, bootstrap 95% interval, and the
                                  CUPED estimate on pre-period margin; overall, and among
                                  the customers the engine chose each play, channel, frame
                                  and segment for (held-out customers were decided for the
                                  same way, just never contacted)
per-play holdouts                 customers of a play's holdout against the others who
                                  were chosen for that play: what the play itself adds
attributed vs incremental         what delivered Actions' outcomes claim per customer,
                                  against what the holdout says they added
second purchase                   Kaplan-Meier time from first to second purchase, and the
                                  share with a second purchase by 30/60/90 days
rates                             subscription attach, return and unsubscribe rates
cannibalisation                   each channel-suppression test: what the channel adds per
                                  customer against what its Actions claim
frames                            per frame and segment: delivered offers, conversions,
                                  rate with a credible interval, attributed profit each
calibration                       the engine's predicted P(accept), P(return) and uplift
                                  against what happened (app/report/calibration.py)
verdict                           the answer first, in words (app/report/verdict.py)
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from typing import Any

from app.report import calibration, verdict
from app.report.data import CustomerFacts, ReportData
from app.report.stats import Estimate, beta_interval, cuped, difference, kaplan_meier, wilson

DAY = 86400.0
_VELOCITY_DAYS = (30, 60, 90)
_MIN_GROUP = 5  # customers per arm for a subgroup row


def _estimate(
    treated: list[CustomerFacts], control: list[CustomerFacts], seed: int
) -> Estimate | None:
    return difference([c.profit for c in treated], [c.profit for c in control], seed)


def _split(
    customers: Iterable[CustomerFacts], experiment: str, on: str, off: str
) -> tuple[list[CustomerFacts], list[CustomerFacts]]:
    treated, control = [], []
    for c in customers:
        arm = c.arm(experiment)
        if arm == on:
            treated.append(c)
        elif arm == off:
            control.append(c)
    return treated, control


def overall(data: ReportData, seed: int = 0) -> dict[str, Any]:
    treated, control = _split(data.customers.values(), "holdout", "treated", "held_out")
    raw = _estimate(treated, control, seed)
    t_adj, c_adj, removed = cuped(
        [c.profit for c in treated],
        [c.pre_margin for c in treated],
        [c.profit for c in control],
        [c.pre_margin for c in control],
    )
    adjusted = difference(t_adj, c_adj, seed)
    attributed = sum(c.attributed_profit for c in treated) / len(treated) if treated else 0.0
    return {
        "treated": len(treated),
        "held_out": len(control),
        "incremental_profit_per_customer": raw.as_dict() if raw else None,
        "cuped": adjusted.as_dict() if adjusted else None,
        "cuped_variance_removed": removed,
        "attributed_profit_per_customer": attributed,
    }


def by_group(data: ReportData, seed: int = 0) -> dict[str, list[dict[str, Any]]]:
    """Incremental profit per customer among those chosen for each play, channel, frame and
    segment (treated vs held out)."""
    groups: dict[str, Callable[[CustomerFacts], set[str]]] = {
        "play": lambda c: c.plays,
        "channel": lambda c: c.channels,
        "frame": lambda c: c.frames,
        "segment": lambda c: c.segments,
    }
    out: dict[str, list[dict[str, Any]]] = {}
    for name, values in groups.items():
        members: dict[str, list[CustomerFacts]] = defaultdict(list)
        for c in data.customers.values():
            for v in values(c):
                members[v].append(c)
        rows = []
        for value in sorted(members):
            treated, control = _split(members[value], "holdout", "treated", "held_out")
            if len(treated) < _MIN_GROUP or len(control) < _MIN_GROUP:
                continue
            estimate = _estimate(treated, control, seed)
            if estimate is not None:
                rows.append({"group": value, **estimate.as_dict()})
        out[name] = rows
    return out


def play_holdouts(data: ReportData, seed: int = 0) -> list[dict[str, Any]]:
    """Each play's own holdout: among globally treated customers chosen for the play, those
    it was held out from against those who got it. Every play the policy holds out has a
    row; one that cannot be measured yet (nobody chosen for it on one side) says so in
    `note`, with value, low and high None."""
    rows: list[dict[str, Any]] = []
    experiments = sorted(
        {k for c in data.customers.values() for k in c.arms if k.startswith("play_holdout:")}
    )
    for experiment in experiments:
        play = experiment.split(":", 1)[1]
        chosen = [
            c for c in data.customers.values() if play in c.plays and c.arm("holdout") == "treated"
        ]
        treated, control = _split(chosen, experiment, "treated", "held_out")
        estimate = _estimate(treated, control, seed)
        if estimate is not None:
            rows.append({"play": play, **estimate.as_dict()})
            continue
        missing = "nobody held out from it" if treated else "nobody who got it"
        rows.append(
            {
                "play": play,
                "value": None,
                "low": None,
                "high": None,
                "treated_n": len(treated),
                "control_n": len(control),
                "note": f"not measured yet: {missing} among the customers chosen for it",
            }
        )
    return rows


def velocity(data: ReportData) -> dict[str, Any]:
    """Time from first to second purchase, per arm of the global holdout, read at the
    horizons (30, 60, 90 days) the data's span reaches (a shorter span: at its end)."""
    span = (data.end - data.start) / DAY
    horizons = [d for d in _VELOCITY_DAYS if d <= span] or [max(int(span), 1)]
    out: dict[str, Any] = {}
    for arm in ("treated", "held_out"):
        durations, observed = [], []
        for c in data.customers.values():
            if c.arm("holdout") != arm or not c.orders:
                continue
            orders = sorted(c.orders)
            if len(orders) >= 2:
                durations.append((orders[1] - orders[0]) / DAY)
                observed.append(True)
            else:
                durations.append(max(data.end - orders[0], 0.0) / DAY)
                observed.append(False)
        curve = kaplan_meier(durations, observed)
        shares = {}
        for days in horizons:
            s, low, high = curve.at(days)
            shares[str(days)] = {"share": 1.0 - s, "low": 1.0 - high, "high": 1.0 - low}
        out[arm] = {
            "customers": curve.n,
            "second_purchases": curve.events,
            "by_days": shares,
            "curve": {"days": curve.times, "survival": curve.survival},
        }
    return out


def rates(data: ReportData) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for arm in ("treated", "held_out"):
        group = data.with_arm("holdout", arm)
        buyers = [c for c in group if c.orders]
        items = sum(c.items for c in group)
        returned = sum(c.returned_items for c in group)
        out[arm] = {
            "customers": len(group),
            "subscription_attach": wilson(sum(c.subscribed for c in buyers), len(buyers)),
            "return_rate": wilson(min(returned, items), items),
            "unsubscribe_rate": wilson(sum(c.unsubscribed for c in group), len(group)),
        }
    return out


def cannibalisation(data: ReportData, seed: int = 0) -> list[dict[str, Any]]:
    """For each channel-suppression test, among globally treated customers: what allowing
    the channel adds per customer, against what the channel's Actions claim."""
    rows = []
    channels = sorted(
        {
            k.split(":", 1)[1]
            for c in data.customers.values()
            for k in c.arms
            if k.startswith("suppress:")
        }
    )
    claimed: dict[tuple[str, str], float] = defaultdict(float)
    for o in data.outcomes:
        if o.get("delivered"):
            claimed[(o["customer_id"], o["channel"])] += float(o.get("margin") or 0.0) - float(
                o.get("return_loss") or 0.0
            )
    for channel in channels:
        experiment = f"suppress:{channel}"
        base = [c for c in data.customers.values() if c.arm("holdout") == "treated"]
        allowed, suppressed = _split(base, experiment, "allowed", "suppressed")
        estimate = _estimate(allowed, suppressed, seed)
        if estimate is None:
            continue
        attributed = sum(claimed[(c.customer_id, channel)] for c in allowed) / len(allowed)
        moved = {
            arm: sum(v for (cid, ch), v in claimed.items() if ch != channel and cid in ids)
            / max(len(ids), 1)
            for arm, ids in (
                ("allowed", {c.customer_id for c in allowed}),
                ("suppressed", {c.customer_id for c in suppressed}),
            )
        }
        rows.append(
            {
                "channel": channel,
                "incremental": estimate.as_dict(),
                "attributed_per_customer": attributed,
                "cannibalised_per_customer": attributed - estimate.value,
                "other_channels_attributed": moved,
            }
        )
    return rows


def frames(data: ReportData) -> list[dict[str, Any]]:
    """Frame tests: delivered offers per frame and segment, and how they did."""
    cells: dict[tuple[str, str], list[float]] = defaultdict(lambda: [0.0, 0.0, 0.0])
    for o in data.outcomes:
        if not o.get("delivered") or not o.get("frame") or o.get("status") not in ("closed",):
            continue
        engaged = bool(o.get("converted")) or (
            o.get("play") == "assist"
            and any(k in (o.get("feedback") or {}) for k in ("click", "accept"))
        )
        for key in ((o["frame"], "all"), (o["frame"], str(o.get("segment")))):
            cell = cells[key]
            cell[0] += 1
            cell[1] += engaged
            cell[2] += float(o.get("profit") or 0.0)
    rows = []
    for (frame, segment), (n, k, profit) in sorted(cells.items()):
        _, low, high = beta_interval(k, n)
        rows.append(
            {
                "frame": frame,
                "segment": segment,
                "offers": int(n),
                "conversions": int(k),
                "rate": k / n,  # observed (0 of 40 is 0%, not the posterior's 2.38%)
                "low": low,
                "high": high,
                "profit_per_offer": profit / n,
            }
        )
    return rows


def build(data: ReportData, seed: int = 0) -> dict[str, Any]:
    """Every figure of the report, as plain data (also written as report.json), the verdict
    in words first."""
    figures = {
        "period": {"start": data.start, "end": data.end},
        "lines": dict(data.counts),
        "skipped": dict(data.skipped),
        "customers": len(data.customers),
        "overall": overall(data, seed),
        "groups": by_group(data, seed),
        "play_holdouts": play_holdouts(data, seed),
        "velocity": velocity(data),
        "rates": rates(data),
        "cannibalisation": cannibalisation(data, seed),
        "frames": frames(data),
        "calibration": calibration.section(data.outcomes, seed),
    }
    delivered = sum(1 for o in data.outcomes if o.get("delivered") is True)
    days = max((data.end - data.start) / DAY, 1.0)
    return {
        "verdict": verdict.section(figures, delivered, days, data.counts["outcomes"]),
        **figures,
    }
