"""`tact report`: incremental profit and the experiments, from files or from the topics."""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from app import codec
from app.catalog import Catalog
from app.errors import ConfigurationError
from app.policy import load_policy
from app.report import analysis, html
from app.report.calibration import MIN_CLOSED_RETURNS
from app.report.data import load
from app.report.verdict import UNMEASURED

if TYPE_CHECKING:
    from app.io.topic_reader import RangeProgress
    from app.settings import Settings


def parse_time(text: str | None) -> float | None:
    """ISO-8601 (a zone required; a bare date means 00:00 UTC) -> epoch seconds."""
    if text is None:
        return None
    bare_date = re.fullmatch(r"\d{4}-\d\d-\d\d", text.strip()) is not None
    value = f"{text.strip()}T00:00:00+00:00" if bare_date else text
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ConfigurationError(f"not an ISO-8601 time: {text!r}") from None
    if parsed.tzinfo is None:  # this machine's zone or UTC? neither is a safe guess
        raise ConfigurationError(
            f"time has no zone: {text!r} (add Z for UTC, or an offset such as +01:00)"
        )
    return parsed.timestamp()


def _file(path: str) -> Iterator[bytes]:
    file = Path(path)
    if not file.is_file():
        raise ConfigurationError(f"file not found: {file}")
    with file.open("rb", buffering=1 << 20) as lines:
        yield from lines


def run_report(args: Any) -> int:
    since, until = parse_time(args.since), parse_time(args.until)
    policy = load_policy(args.policy)
    catalog = Catalog.from_jsonl(args.catalog) if args.catalog else None
    if args.from_topics:
        streams = _topics(since, until)
    else:
        missing = [n for n in ("actions", "outcomes", "events") if not getattr(args, n)]
        if missing:
            raise ConfigurationError(
                f"give --{', --'.join(missing)} (files), or --from-topics to read the topics"
            )
        streams = {n: _file(getattr(args, n)) for n in ("actions", "outcomes", "events")}
    data = load(
        streams["actions"],
        streams["outcomes"],
        _chain(streams),
        catalog,
        args.margin_rate if args.margin_rate is not None else policy.priors.value.margin_rate,
        policy.return_handling_cost,
        since,
        until,
    )
    if not data.customers:
        print("tact report: no Actions in the period: nothing to report", file=sys.stderr)
        return 1
    figures = analysis.build(data, seed=args.seed)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.html").write_text(html.render(figures), "utf-8")
    (out / "report.json").write_bytes(codec.dumps_sorted(figures) + b"\n")
    print("\n".join(summary(figures)))
    print(f"-> {out / 'report.html'} (and report.json)")
    return 0


def _chain(streams: dict[str, Iterable[bytes]]) -> Iterator[bytes]:
    if "events" in streams:
        yield from streams["events"]
    for name in ("clickstream", "orders"):
        if name in streams:
            yield from streams[name]


def _topics(since: float | None, until: float | None) -> dict[str, Iterable[bytes]]:
    from app.io.topic_reader import read_range
    from app.settings import load_settings

    settings = load_settings()

    def shown(state: RangeProgress) -> None:
        if sys.stderr.isatty():
            sys.stderr.write(f"\r{state.topic}: {state.read:,} read, {state.remaining:,} to go   ")

    def decided(topic: str, field: str) -> list[bytes]:
        return read_decided_said(settings, topic, since, until, field, shown, "period")

    # Actions and Outcomes by when they were decided (their records are stamped when written,
    # which for a backfill is long after); events whole: the pre-period is CUPED's covariate,
    # and the report keeps those up to `until` by their own time (a producer other than
    # `tact produce` stamps them when it sends them).
    return {
        "actions": decided(settings.topic_actions, "ts"),
        "outcomes": decided(settings.topic_outcomes, "decided_at"),
        "clickstream": list(read_range(settings, settings.topic_clickstream, None, None)),
        "orders": list(read_range(settings, settings.topic_orders, None, None)),
    }


def read_decided_said(
    settings: Settings,
    topic: str,
    since: float | None,
    until: float | None,
    field: str,
    shown: Callable[[RangeProgress], None],
    within: str = "range",
) -> list[bytes]:
    """The worker's records on `topic` decided in the range (app.io.topic_reader
    read_decided), and a line saying how many, and how many more were read outside it."""
    from app.io.topic_reader import read_decided

    values, outside = read_decided(settings, topic, since, until, field, shown)
    more = f" ({outside:,} more read, decided outside the {within})" if outside else ""
    said(f"{topic}: {len(values):,} records{more}")
    return values


def said(line: str) -> None:
    """A line of progress on stderr, over the one being redrawn on a terminal."""
    sys.stderr.write(f"\r{line}{' ' * 30}\n" if sys.stderr.isatty() else f"{line}\n")


def summary(f: dict[str, Any]) -> list[str]:
    """The terminal summary of a report's figures."""
    o = f["overall"]

    def est(e: dict[str, Any] | None) -> str:
        if not e or e.get("value") is None:
            return "n/a" if not e else f"({e.get('note', 'n/a')})"
        mark = " *" if e["low"] > 0 or e["high"] < 0 else ""
        return f"{e['value']:+.2f} [{e['low']:+.2f}, {e['high']:+.2f}]{mark}"

    kind = f["verdict"]["overall"]["kind"]
    lines = [
        f"tact report: {f['customers']:,} customers decided for ({o['treated']:,} treated, "
        f"{o['held_out']:,} held out)",
        f"  verdict: {f['verdict']['overall']['text']}",
        (
            "  incremental profit per customer   not measured: "
            + ("no Outcome yet" if kind == "no_outcome" else "nothing was delivered")
            if kind in UNMEASURED
            else f"  incremental profit per customer   {est(o['incremental_profit_per_customer'])}"
            f"   CUPED {est(o['cuped'])}"
        ),
        f"  attributed profit per customer    {o['attributed_profit_per_customer']:+.2f}"
        "   (what the Actions' outcomes claim)",
    ]
    measured = kind not in UNMEASURED
    for name in ("play", "channel") if measured else ():
        rows = f["groups"].get(name, [])
        if rows:
            lines.append(
                f"  by {name:<8}  " + "; ".join(f"{r['group']} {est(r)}" for r in rows[:6])
            )
    if f["play_holdouts"] and measured:
        lines.append(
            "  play holdouts  " + "; ".join(f"{r['play']} {est(r)}" for r in f["play_holdouts"])
        )
    v = f["velocity"]
    if v.get("treated") and v.get("held_out"):

        def shares(arm: str) -> str:
            return "/".join(f"{d['share']:.0%}" for d in v[arm]["by_days"].values())

        horizons = "/".join(v["treated"]["by_days"])
        lines.append(
            f"  second purchase by {horizons} days  treated {shares('treated')}, "
            f"held out {shares('held_out')}"
        )
    r = f["rates"]
    if "treated" in r and "held_out" in r:
        lines.append(
            "  "
            + "; ".join(
                f"{label} {r['treated'][key][0]:.1%} vs {r['held_out'][key][0]:.1%}"
                for key, label in (
                    ("subscription_attach", "subscriptions"),
                    ("return_rate", "returns"),
                    ("unsubscribe_rate", "unsubscribes"),
                )
            )
            + " (treated vs held out)"
        )
    for c in f["cannibalisation"] if measured else ():
        lines.append(
            f"  {c['channel'].replace('_', ' ')}: its Actions claimed "
            f"{c['attributed_per_customer']:+.2f} per customer; what it really added (customers"
            f" allowed it against those kept from it) was {est(c['incremental'])}"
        )
    best = sorted((r for r in f["frames"] if r["segment"] == "all"), key=lambda r: -r["rate"])
    if best:
        lines.append(
            "  frames by conversion  "
            + ", ".join(
                f"{r['frame']} {r['rate']:.1%} ({r['conversions']:,} of {r['offers']:,})"
                for r in best
            )
        )
    lines += calibration_lines(f.get("calibration"))
    if f["skipped"]:
        lines.append(f"  unreadable lines skipped: {f['skipped']}")
    lines.append("  (* : the 95% interval excludes 0)")
    return lines


def calibration_lines(c: dict[str, Any] | None) -> list[str]:
    """The calibration figures in at most four lines."""
    if not c:
        return []
    lead, pad = "  calibration  ", " " * 15

    def scored(g: dict[str, Any]) -> str:
        auc = "n/a" if g["auc"] is None else f"{g['auc']:.2f}"
        return (
            f"Brier {g['brier']:.3f}, ECE {g['ece']:.3f}, AUC {auc}, predicted "
            f"{g['mean_predicted']:.1%} vs observed {g['observed']:.1%} (n={g['n']:,}"
        )

    shown = []
    if c.get("accept"):
        shown.append(f"accept: {scored(c['accept'])})")
    if c.get("assist"):
        shown.append(f"assist engagement: {scored(c['assist'])})")
    lines = ["; ".join(shown)] if shown else []
    if c.get("returns"):
        windows = c["returns"]["return_windows"]
        still_open = windows["open"] if windows["closed"] < MIN_CLOSED_RETURNS else 0
        bound = f"; {still_open:,} return windows still open: a lower bound" if still_open else ""
        lines.append(f"returns: {scored(c['returns'])}{bound})")
    u = c.get("uplift")
    if u:
        o = u["overall"]
        mark = " *" if o["low"] > 0 or o["high"] < 0 else ""
        rank = "n/a" if u["rank_correlation"] is None else f"{u['rank_correlation']:+.2f}"
        slope = "n/a" if u["slope"] is None else f"{u['slope']:.2f}"
        top, bottom = u["top_half"]["observed"], u["bottom_half"]["observed"]
        lines.append(
            f"uplift ({u['binning']}): predicted {o['predicted']:+.3f} vs observed "
            f"{o['observed']:+.3f} [{o['low']:+.3f}, {o['high']:+.3f}]{mark}; by bucket rank "
            f"corr. {rank}, slope {slope}; top half {top:+.3f} vs bottom {bottom:+.3f}"
        )
    elif lines:
        counts = c["outcomes"]
        lines.append(
            f"uplift: the holdout is too small ({counts.get('uplift_delivered', 0):,} delivered, "
            f"{counts.get('uplift_held_out', 0):,} held out)"
        )
    without = c["outcomes"].get("without_predictions", 0)
    if not lines:
        lines = c["notes"][:1] or ["nothing to calibrate"]
    elif without:
        lines.append(f"{without:,} outcomes without predictions skipped (older records)")
    return [(lead if i == 0 else pad) + line for i, line in enumerate(lines)]
