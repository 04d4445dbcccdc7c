"""The cross-sell policy matrix: who may get what offer, where, how hard, and what is kept quiet,
drawn from a policy file by the referee that decides with it (the marketer's one-page view).

Every segment a customer and an offer can fall in (new or returning, return risk, value, ready
or not, discount-trained or not, the offer's margin tier) is run through the policy's rules at
every moment; segments the rules treat alike are one row, described by the values they share.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from html import escape

from app.policy import INTENSITY_ORDER, MOMENTS, Policy
from app.referee import Referee, Segments, Verdict

PLAYS = ("assist", "expand", "commit")
DIMENSIONS = ("customer", "risk", "ltv", "ready", "discount_trained", "margin")
VALUES: dict[str, tuple[object, ...]] = {
    "customer": ("new", "returning"),
    "risk": ("low", "medium", "high"),
    "ltv": ("low", "medium", "high"),
    "ready": (False, True),
    "discount_trained": (False, True),
    "margin": ("thin", "normal", "high"),
}


@dataclass
class Row:
    rules: tuple[str, ...]  # every rule that applies to these segments, at any moment
    verdicts: dict[str, Verdict]  # moment -> what the rules say there
    members: list[dict[str, object]] = field(default_factory=list)

    def who(self) -> str:
        """The segments of this row, by the values they take (all values: not shown)."""
        parts, combinations = [], 1
        for dim in DIMENSIONS:
            seen = [v for v in VALUES[dim] if any(m[dim] == v for m in self.members)]
            combinations *= len(seen)
            if len(seen) == len(VALUES[dim]):
                continue
            parts.append(_value(dim, seen))
        who = "; ".join(parts) or "everyone"
        # The rows are what the rules' conditions cut out: not always every combination of
        # the values shown.
        return who if combinations == len(self.members) else f"{who} (some combinations)"


def _value(dim: str, seen: list[object]) -> str:
    if dim == "ready":
        return "ready" if seen == [True] else "not ready"
    if dim == "discount_trained":
        return "discount-trained" if seen == [True] else "not discount-trained"
    names = {"customer": "", "risk": "return risk ", "ltv": "value ", "margin": "offer margin "}
    return names[dim] + "/".join(str(v) for v in seen)


def matrix(policy: Policy) -> list[Row]:
    """The rows of the matrix, the most general (fewest rules) first."""
    referee = Referee(policy)
    rows: dict[tuple[tuple[str, ...], ...], Row] = {}
    for combo in itertools.product(*(VALUES[d] for d in DIMENSIONS)):
        member = dict(zip(DIMENSIONS, combo, strict=True))
        seg = Segments(
            customer=str(member["customer"]),
            risk=str(member["risk"]),
            ltv=str(member["ltv"]),
            ready=bool(member["ready"]),
            discount_trained=bool(member["discount_trained"]),
        )
        verdicts = {
            moment: referee.for_offer(seg, moment, str(member["margin"]))
            for moment in MOMENTS
            if moment in policy.moments
        }
        key = tuple(tuple(v.rules) for v in verdicts.values())
        if key not in rows:
            applied = tuple(dict.fromkeys(r for v in verdicts.values() for r in v.rules))
            rows[key] = Row(applied, verdicts)
        rows[key].members.append(member)
    return sorted(rows.values(), key=lambda r: (len(r.rules), r.rules))


def plays(policy: Policy, verdict: Verdict) -> list[str]:
    """Each play: denied (by which rule), or allowed up to an intensity, with its preference."""
    out = []
    for play in PLAYS:
        if play in verdict.deny_plays:
            out.append(f"no {play} ({verdict.deny_plays[play]})")
            continue
        most, rule = verdict.max_intensity.get(play, (len(INTENSITY_ORDER) - 1, ""))
        text = f"{play} up to {INTENSITY_ORDER[most]}" + (f" ({rule})" if rule else "")
        bonus = verdict.prefer_plays.get(play, 0.0)
        out.append(text + (f", preferred {bonus:+.1f}" if bonus else ""))
    return out


def channels(policy: Policy, moment: str, verdict: Verdict) -> tuple[list[str], list[str]]:
    """The moment's channels this verdict allows, and those it keeps closed (with the rule)."""
    allowed, closed = [], []
    for channel in policy.moments[moment].channels:
        rule = verdict.channel_block(channel)
        if rule is None:
            allowed.append(channel)
        else:
            closed.append(f"{channel} ({rule})")
    return allowed, closed


def frames(verdict: Verdict) -> list[str]:
    out = [f"no {f} ({rule})" for f, rule in verdict.deny_frames.items()]
    out += [f"{f} {bonus:+.1f}" for f, bonus in verdict.prefer_frames.items()]
    out += [
        f"{f} at most {most} per {days:g} days" for f, (most, days) in verdict.frame_budget.items()
    ]
    out += [f"no {r} offers ({rule})" for r, rule in verdict.deny_relations.items()]
    return out


def always(policy: Policy) -> list[str]:
    """What holds for everyone: holdout, consent, quiet hours, caps, suppressions, sequencing."""
    quiet = policy.time.quiet_hours
    protect = [
        f"after {trigger.replace('_', ' ')}: "
        + ", ".join(f"{c} {h / 24:g} days" for c, h in quiet_for.items())
        for trigger, quiet_for in policy.protect.items()
    ]
    seq = policy.sequencing
    return [
        f"global holdout {policy.holdout.share:.0%} (decided and recorded, never delivered)",
        f"consent required before {', '.join(policy.consent.required)}",
        f"no outbound message between {quiet.start}:00 and {quiet.end}:00 local time",
        "per customer and day: "
        + ", ".join(f"{c} {spec.daily_cap}" for c, spec in policy.channels.items())
        + (
            f"; {', '.join(surfaces)} together {policy.caps.onsite_per_day}"
            if (surfaces := _onsite_surfaces(policy))
            else "; no shared onsite cap"
        ),
        *protect,
        f"an onsite upsell keeps paid retargeting quiet {seq.onsite_upsell_suppresses_paid_hours:g}"
        f" h; a post-purchase offer {seq.post_purchase_suppresses_paid_hours:g} h",
        f"an offer expected to earn less than {policy.min_expected_profit:.2f} is not made "
        "(protect: no offer)",
    ]


def text(policy: Policy) -> str:
    rows = matrix(policy)
    lines = [
        f"Cross-sell policy matrix: {policy.version} ({len(policy.rules)} rules), "
        f"{sum(len(r.members) for r in rows)} segments in {len(rows)} rows",
        _segments_legend(policy),
        _surfaces(policy),
        "",
    ]
    for n, row in enumerate(rows, start=1):
        rules = ", ".join(row.rules) or "no rule"
        lines.append(f"{n}. {row.who()}  [{len(row.members)} segments; {rules}]")
        lines.extend(_row_lines(policy, row))
        lines.append("")
    lines.append("For everyone:")
    lines.extend(f"  - {line}" for line in always(policy))
    return "\n".join(lines)


def _row_lines(policy: Policy, row: Row) -> list[str]:
    first = next(iter(row.verdicts.values()))
    out = [f"   plays: {'; '.join(plays(policy, first))}"]
    closed_at: dict[str, list[str]] = {}  # "channel (rule)" -> moments
    for moment, verdict in row.verdicts.items():
        for channel in channels(policy, moment, verdict)[1]:
            closed_at.setdefault(channel, []).append(moment)
    if closed_at:
        out.append(
            "   closed: " + "; ".join(f"{c} at {', '.join(m)}" for c, m in closed_at.items())
        )
    shown = frames(first)
    if shown:
        out.append(f"   frames and offers: {'; '.join(shown)}")
    return out


def _surfaces(policy: Policy) -> str:
    return "Surfaces by moment (open unless a row closes them): " + " | ".join(
        f"{moment}: {', '.join(spec.channels)}" for moment, spec in policy.moments.items()
    )


def _segments_legend(policy: Policy) -> str:
    s = policy.segments
    return (
        f"Segments: return risk medium from {s.risk_medium_from:g}, high from {s.risk_high_from:g}"
        f" (risk score); value medium from {s.ltv_medium_from:g}, high from {s.ltv_high_from:g} "
        f"(predicted customer value); ready: confidence >= {s.ready_confidence_from:g}; "
        f"discount-trained: price sensitivity >= {s.discount_trained_from:g}; offer margin thin "
        f"below {s.margin_thin_below:.0%}, high from {s.margin_high_from:.0%}."
    )


def html(policy: Policy) -> str:
    rows = matrix(policy)
    moments = [m for m in MOMENTS if m in policy.moments]
    head = "".join(f"<th>{escape(m)}</th>" for m in moments)
    body = []
    for n, row in enumerate(rows, start=1):
        first = next(iter(row.verdicts.values()))
        cells = []
        for moment in moments:
            allowed, closed = channels(policy, moment, row.verdicts[moment])
            cells.append(
                f"<td>{escape(', '.join(allowed) or 'none')}"
                + (f"<br><s>{escape(', '.join(closed))}</s>" if closed else "")
                + "</td>"
            )
        body.append(
            f"<tr><td>{n}</td><td>{escape(row.who())}<br><small>{len(row.members)} segments; "
            f"{escape(', '.join(row.rules) or 'no rule')}</small></td>"
            f"<td>{'<br>'.join(escape(p) for p in plays(policy, first))}</td>"
            + "".join(cells)
            + f"<td>{'<br>'.join(escape(f) for f in frames(first)) or '-'}</td></tr>"
        )
    always_items = "".join(f"<li>{escape(line)}</li>" for line in always(policy))
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>Cross-sell policy matrix: {escape(policy.version)}</title>
<style>
body {{ font: 14px/1.4 system-ui, sans-serif; margin: 2em; color: #222; }}
table {{ border-collapse: collapse; }}
th, td {{ border: 1px solid #ccc; padding: .4em .6em; vertical-align: top; text-align: left; }}
th {{ background: #f3f3f3; }} s {{ color: #a33; }} small {{ color: #666; }}
</style></head><body>
<h1>Cross-sell policy matrix: {escape(policy.version)}</h1>
<p>{escape(_segments_legend(policy))} Each row is the segments the policy's rules treat alike;
the channels each decision moment may use (struck through: closed by the rule named).</p>
<table><tr><th>#</th><th>who</th><th>plays</th>{head}<th>frames and offers</th></tr>
{"".join(body)}
</table>
<h2>For everyone</h2><ul>{always_items}</ul>
</body></html>
"""


def _onsite_surfaces(policy: Policy) -> list[str]:
    return [c for c in policy.channels if policy.counts_onsite(c)]
