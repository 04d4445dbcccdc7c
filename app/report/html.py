"""The report as one self-contained HTML page (inline CSS and SVG)."""

from __future__ import annotations

from datetime import UTC, datetime
from html import escape
from typing import Any

from app.report import calibration_html, svg
from app.report.markup import table as _table
from app.report.verdict import UNMEASURED

_CSS = """
body{font-family:system-ui,sans-serif;max-width:980px;margin:2em auto;color:#222;padding:0 1em}
h1{font-size:1.6em}h2{font-size:1.2em;margin-top:2em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:.6em 0;font-size:.92em}
td,th{padding:.25em .7em;border-bottom:1px solid #eee;text-align:right}
td:first-child,th:first-child{text-align:left}
.big{font-size:2em;font-weight:600}.muted{color:#777}.note{color:#555;font-size:.9em;max-width:760px}
.sig{color:#2a6f97;font-weight:600}.neg{color:#c8553d;font-weight:600}
.key span{display:inline-block;width:12px;height:12px;margin:0 4px 0 12px;vertical-align:middle}
.plots{display:flex;flex-wrap:wrap;gap:1em}.plots figure{margin:0}figcaption{font-size:.9em}
"""


_MIN_FRAME_CELL = 20


def _day(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d") if t else "?"


def _money(value: float | None) -> str:
    return "n/a" if value is None else f"{value:+,.2f}"


def _ci(e: dict[str, Any] | None) -> str:
    if not e:
        return "<span class='muted'>n/a</span>"
    cls = "sig" if e["low"] > 0 else "neg" if e["high"] < 0 else ""
    interval = f"[{e['low']:+,.2f}, {e['high']:+,.2f}]"
    return f"<span class='{cls}'>{_money(e['value'])}</span> <span class='muted'>{interval}</span>"


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{k} {v:,}" for k, v in counts.items())


def render(figures: dict[str, Any], title: str = "tact report") -> str:
    o = figures["overall"]
    inc, cup = o["incremental_profit_per_customer"], o["cuped"]
    period = figures["period"]
    measured = figures["verdict"]["overall"]["kind"] not in UNMEASURED  # else nothing to measure
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>{escape(title)}</title>",
        f"<style>{_CSS}</style></head><body><h1>{escape(title)}</h1>",
        f"<p class='muted'>{figures['customers']:,} customers decided for, "
        f"{_day(period['start'])} to {_day(period['end'])}: {o['treated']:,} treated, "
        f"{o['held_out']:,} in the global holdout. Lines read: {_counts(figures['lines'])}"
        + (
            f"; unreadable lines skipped: {_counts(figures['skipped'])}"
            if figures["skipped"]
            else ""
        )
        + ".</p>",
        *_verdict(figures["verdict"]),
    ]
    if measured:
        parts += [
            "<h2>Incremental profit per customer</h2>",
            f"<p class='big'>{_ci(inc)}</p>",
            "<p class='note'>Profit per customer (margin of orders, less returns, channel costs "
            "and the value of subscribers lost), treated minus global holdout, with a bootstrap "
            f"95% interval. CUPED on pre-period margin: {_ci(cup)} (variance removed: "
            f"{o['cuped_variance_removed']:.0%}). What delivered Actions' outcomes claim per "
            "treated customer (attributed margin less returns): "
            f"<b>{_money(o['attributed_profit_per_customer'])}</b> &mdash; attribution counts "
            "purchases that would have happened anyway; the holdout does not.</p>",
            _precision(o),
        ]
        parts += _measured(figures)
    parts += _velocity(figures["velocity"], period)
    parts += _rates(figures["rates"])
    if measured:
        parts += _cannibalisation(figures["cannibalisation"])
    parts += _frames(figures["frames"])
    if "calibration" in figures:
        parts += calibration_html.render(figures["calibration"])
    parts.append(
        "<p class='note'>Assignment to every experiment is by hash of the customer id and the "
        "policy's salts, recorded on each Action. Held-out customers were decided for exactly as "
        "the others, and never contacted. Intervals are percentile bootstraps (1,000 resamples, "
        "seeded), Wilson for rates, Greenwood for survival, Beta(1+s, 1+f) for frame rates.</p>"
        "</body></html>"
    )
    return "".join(parts)


def _measured(figures: dict[str, Any]) -> list[str]:
    """Incremental profit among the customers chosen for each play, channel, frame and
    segment, and each play's own holdout (only when something was delivered)."""
    parts = []
    for name, label in (
        ("play", "play"),
        ("channel", "channel"),
        ("frame", "frame"),
        ("segment", "segment"),
    ):
        rows = figures["groups"].get(name, [])
        parts.append(f"<h3>Among customers chosen for each {label}</h3>")
        parts.append(
            svg.intervals(
                [(r["group"], r["value"], r["low"], r["high"]) for r in rows],
                "incremental profit per customer, treated - held out (95% interval)",
            )
        )
    parts.append("<h2>What each play adds (per-play holdouts)</h2>")
    holdouts = figures["play_holdouts"]
    parts.append(
        svg.intervals(
            [(r["play"], r["value"], r["low"], r["high"]) for r in holdouts if "note" not in r],
            "profit per customer the play adds, got it - held out from it (95% interval)",
        )
    )
    parts.append(
        _table(
            ["play", "incremental per customer", "95% interval", "got it", "held out"],
            [
                [
                    escape(r["play"]),
                    *(
                        [escape(r["note"]), ""]
                        if "note" in r
                        else [_money(r["value"]), f"[{r['low']:+,.2f}, {r['high']:+,.2f}]"]
                    ),
                    f"{r['treated_n']:,}",
                    f"{r['control_n']:,}",
                ]
                for r in holdouts
            ],
        )
    )
    return parts


def _verdict(v: dict[str, Any]) -> list[str]:
    """The answer first, in words: overall, then per play and channel."""
    parts = [f"<p class='big'>{escape(v['overall']['text'])}</p>"]
    rows = [*v.get("play", []), *v.get("channel", [])]
    if rows:
        parts.append("<ul>" + "".join(f"<li>{escape(r['text'])}</li>" for r in rows) + "</ul>")
    return parts


def _precision(o: dict[str, Any]) -> str:
    """What limits the headline interval, and what would narrow it."""
    e = o["incremental_profit_per_customer"]
    if not e:
        return ""
    half = (e["high"] - e["low"]) / 2
    text = (
        f"The interval is &plusmn;{half:,.2f} per customer with {o['held_out']:,} customers held "
        "out: its width falls with the square root of the smaller group, so four times the "
        "holdout (or the period) halves it."
    )
    if o["cuped_variance_removed"] == 0:
        text += (
            " CUPED removed nothing: these customers bought nothing before the period; with "
            "<code>--since</code> after some history, their earlier margin becomes the covariate."
        )
    return f"<p class='note'>{text}</p>"


def _velocity(v: dict[str, Any], period: dict[str, float]) -> list[str]:
    horizon = max((period["end"] - period["start"]) / 86400.0, 1.0)
    series = [
        (
            f"{arm} ({v[arm]['customers']:,})",
            colour,
            v[arm]["curve"]["days"],
            v[arm]["curve"]["survival"],
        )
        for arm, colour in (("treated", svg.TREATED), ("held_out", svg.CONTROL))
        if v.get(arm, {}).get("customers")
    ]
    rows = []
    by_days = [v[arm]["by_days"] for arm in ("treated", "held_out") if arm in v]
    for arm in ("treated", "held_out"):
        if arm in v:
            rows.append(
                [arm]
                + [
                    f"{d['share']:.1%} <span class='muted'>[{d['low']:.1%}, {d['high']:.1%}]</span>"
                    for d in v[arm]["by_days"].values()
                ]
            )
    return [
        "<h2>Second purchase velocity</h2>",
        svg.steps(series, "days since the first purchase", "no second purchase yet", horizon),
        _table(["arm", *(f"by {d} days" for d in next(iter(by_days), {}))], rows),
        "<p class='note'>Kaplan-Meier: customers without a second purchase are censored at the end "
        "of the data.</p>",
    ]


def _rates(r: dict[str, Any]) -> list[str]:
    labels = (
        ("subscription_attach", "subscription attach"),
        ("return_rate", "return rate (items)"),
        ("unsubscribe_rate", "unsubscribe rate"),
    )
    if "treated" not in r or "held_out" not in r:
        return ["<h2>Rates</h2><p class='muted'>needs both arms</p>"]
    rows = [
        (label, _triple(r["treated"][key]), _triple(r["held_out"][key])) for key, label in labels
    ]
    key = (
        f"<p class='key'><span style='background:{svg.TREATED}'></span>treated"
        f"<span style='background:{svg.CONTROL}'></span>held out</p>"
    )
    return ["<h2>Subscriptions, returns and unsubscribes</h2>", key, svg.paired(rows)]


def _triple(values: list[float]) -> tuple[float, float, float]:
    value, low, high = values
    return value, low, high


def _cannibalisation(rows: list[dict[str, Any]]) -> list[str]:
    body = [
        [
            escape(r["channel"]),
            _ci(r["incremental"]),
            _money(r["attributed_per_customer"]),
            _money(r["cannibalised_per_customer"]),
            f"{r['incremental']['treated_n']:,} / {r['incremental']['control_n']:,}",
        ]
        for r in rows
    ]
    return [
        "<h2>Channel cannibalisation (suppression tests)</h2>",
        _table(
            [
                "channel",
                "adds per customer [95%]",
                "its Actions claim",
                "claimed but not added",
                "allowed / suppressed",
            ],
            body,
        ),
        "<p class='note'>For a random slice of customers the channel is closed. What it adds is "
        "the profit per customer of the others minus the slice's; what its Actions claim is their "
        "attributed margin. The difference is what the channel takes credit for that would have "
        "come anyway or through other channels.</p>",
    ]


def _frames(rows: list[dict[str, Any]]) -> list[str]:
    overall = [r for r in rows if r["segment"] == "all"]
    chart = svg.intervals(
        [(r["frame"], r["rate"], r["low"], r["high"]) for r in overall],
        "conversion rate of delivered offers, observed (95% credible interval)",
        number="{:.1%}",
    )
    body = [
        [
            escape(r["frame"]),
            escape(r["segment"]),
            f"{r['offers']:,}",
            f"{r['conversions']:,}",
            f"{r['rate']:.2%} <span class='muted'>[{r['low']:.2%}, {r['high']:.2%}]</span>",
            _money(r["profit_per_offer"]),
        ]
        for r in rows
        if r["segment"] == "all" or r["offers"] >= _MIN_FRAME_CELL
    ]
    return [
        "<h2>Persuasion frames (bandit tests)</h2>",
        "<p class='note'>Delivered offers by frame: conversion (an order of the offered item, or "
        "engagement with an assist): the observed rate with its counts and a 95% credible "
        "interval (Beta(1 + converted, 1 + not)), overall and per segment "
        f"(customer:risk:ltv; segments with fewer than {_MIN_FRAME_CELL} offers of a frame "
        "are left out of the table, not of the overall rows).</p>",
        chart,
        _table(["frame", "segment", "offers", "converted", "rate", "attributed profit each"], body),
    ]
