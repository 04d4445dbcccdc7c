"""The calibration section of report.html (figures from app/report/calibration.py): a table
per group, reliability plots, and uplift by bucket of the predicted uplift."""

from __future__ import annotations

from html import escape
from typing import Any

from app.report import svg
from app.report.markup import table

_GROUPS = (
    ("accept", "acceptance (expand, commit)", "P(accept)", "ordered the offered SKU"),
    ("assist", "assist engagement (shown)", "P(engage)", "clicked or accepted"),
    ("returns", "returns (credited purchases)", "P(return)", "returned"),
)


def render(c: dict[str, Any]) -> list[str]:
    """The calibration section of the page, from report.json's `calibration`."""
    parts = [
        "<h2>Calibration of the engine's predictions</h2>",
        "<p class='note'>At each decision the engine records what it expects: P(accept) of the "
        "offered SKU in the window if delivered (of engaging, for an assist), P(buying it "
        "anyway) and P(return) if bought. Here they meet what happened, on outcomes whose "
        "purchase window ran its course. Per group: the Brier score (in brackets, that of "
        "always forecasting the observed rate: a model worth having scores lower), the "
        "expected calibration error (ECE: |mean predicted - observed| per bin, weighted by "
        "count) and the AUC (the chance a random success is ranked above a random failure; "
        "0.5 is no better than chance). In the plots a point below the diagonal is a bin "
        "where the engine expected more than happened.</p>",
    ]
    if c.get("notes"):
        parts.append(
            "<ul class='note'>" + "".join(f"<li>{escape(n)}</li>" for n in c["notes"]) + "</ul>"
        )
    if not any(c.get(key) for key in ("accept", "assist", "returns", "uplift")):
        return parts
    rows, plots = [], []
    for key, label, axis, what in _GROUPS:
        g = c.get(key)
        if not g:
            continue
        auc = "n/a" if g["auc"] is None else f"{g['auc']:.3f}"
        rows.append(
            [
                label,
                f"{g['n']:,}",
                f"{g['mean_predicted']:.2%}",
                f"{g['observed']:.2%}",
                f"{g['brier']:.4f} <span class='muted'>({g['brier_base_rate']:.4f})</span>",
                f"{g['ece']:.4f}",
                auc,
            ]
        )
        for play, p in g.get("by_play", {}).items():
            rows.append(
                [
                    f"&nbsp;&nbsp;{escape(play)}",
                    f"{p['n']:,}",
                    f"{p['mean_predicted']:.2%}",
                    f"{p['observed']:.2%}",
                    "",
                    "",
                    "",
                ]
            )
        bins = [(b["count"], b["predicted"], b["observed"], b["low"], b["high"]) for b in g["bins"]]
        plots.append(
            f"<figure>{svg.reliability(bins, f'predicted {axis}', f'observed: {what}')}"
            f"<figcaption>{escape(label)}, by {g['binning'][:-1]} of {escape(axis)}"
            "</figcaption></figure>"
        )
    parts.append(table(["", "outcomes", "mean predicted", "observed", "Brier", "ECE", "AUC"], rows))
    if plots:
        parts.append(f"<div class='plots'>{''.join(plots)}</div>")
    parts += _uplift(c.get("uplift"))
    return parts


def _rate_ci(value: float, low: float, high: float) -> str:
    cls = "sig" if low > 0 else "neg" if high < 0 else ""
    interval = f"[{low:+.4f}, {high:+.4f}]"
    return f"<span class='{cls}'>{value:+.4f}</span> <span class='muted'>{interval}</span>"


def _uplift(u: dict[str, Any] | None) -> list[str]:
    head = "<h3>Uplift: delivered against held out, by predicted uplift</h3>"
    if not u:
        return [head, "<p class='muted'>the holdout is too small for uplift buckets</p>"]
    o, top, bottom = u["overall"], u["top_half"], u["bottom_half"]
    rank = "n/a" if u["rank_correlation"] is None else f"{u['rank_correlation']:+.2f}"
    slope = "n/a" if u["slope"] is None else f"{u['slope']:.2f}"
    inc = u["incremental_conversions"]
    chart = svg.uplift(
        [
            (
                str(i + 1),
                b["predicted"],
                b["observed"] if b["enough"] else None,
                b["low"],
                b["high"],
            )
            for i, b in enumerate(u["buckets"])
        ]
    )
    body = [
        [
            str(i + 1),
            f"{b['predicted']:+.4f} "
            f"<span class='muted'>({b['from']:+.3f} to {b['to']:+.3f})</span>",
            f"{b['treated_n']:,}",
            f"{b['treated_rate']:.2%}",
            f"{b['held_out_n']:,}",
            f"{b['held_out_rate']:.2%}",
            _rate_ci(b["observed"], b["low"], b["high"])
            if b["enough"]
            else "<span class='muted'>holdout too small</span>",
        ]
        for i, b in enumerate(u["buckets"])
    ]
    return [
        head,
        f"<p class='note'>Expand and commit outcomes in {u['binning']} of the predicted uplift "
        "(P(accept) - P(organic)), cut over delivered and held-out outcomes together. Observed "
        "uplift is the conversion rate of the delivered less that of the held out (decided the "
        "same way, never delivered). Overall: predicted "
        f"<b>{o['predicted']:+.4f}</b>, observed {_rate_ci(o['observed'], o['low'], o['high'])} "
        f"({o['treated_n']:,} delivered, {o['held_out_n']:,} held out). Does observed uplift "
        f"rise with predicted? Rank correlation over the buckets {rank}, slope {slope} (1 if "
        "the predictions were right, 0 if they ranked nothing); top half "
        f"{_rate_ci(top['observed'], top['low'], top['high'])} against bottom half "
        f"{_rate_ci(bottom['observed'], bottom['low'], bottom['high'])}. Incremental "
        f"conversions among the delivered: the engine expected {inc['predicted']:,.0f}, the "
        f"holdout says {inc['observed']:,.0f} [{inc['low']:,.0f}, {inc['high']:,.0f}]. "
        "Customers, not decisions, are assigned to the holdout, so intervals are bootstraps "
        f"over customers ({u['customers']['treated']:,} delivered to, "
        f"{u['customers']['held_out']:,} held out); and a held-out customer's later decisions "
        "follow from not having been contacted, so read the buckets as indicative.</p>",
        chart,
        table(
            [
                "bucket",
                "predicted uplift (range)",
                "delivered",
                "rate",
                "held out",
                "rate",
                "observed uplift [95%]",
            ],
            body,
        ),
    ]
