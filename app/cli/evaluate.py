"""`tact evaluate`: off-policy evaluation of a candidate policy on logged decisions."""

from __future__ import annotations

import sys
from typing import Any

from app import codec
from app.catalog import Catalog
from app.cli.report import _file
from app.evaluate.offline import evaluate
from app.policy import load_policy
from app.sample import demo_catalog

_ROWS = (("IPS", "ips"), ("SNIPS", "snips"), ("DR", "dr"))


def run_evaluate(args: Any) -> int:
    candidate = load_policy(args.policy)
    catalog = Catalog.from_jsonl(args.catalog) if args.catalog else demo_catalog()
    if not args.catalog:
        print("tact evaluate: no --catalog: using the demo catalog", file=sys.stderr)
    result = evaluate(
        candidate,
        catalog,
        _file(args.actions),
        _file(args.outcomes),
        _file(args.events),
        seed=args.seed,
        reward=args.reward,
    )
    f = result.figures
    if "n" not in f:
        print(
            "tact evaluate: no logged decision has an outcome: nothing to evaluate", file=sys.stderr
        )
        return 1
    print("\n".join(summary(f, args.policy or "the built-in policy")))
    if result.skipped:
        print(f"  unreadable lines skipped: {dict(result.skipped)}")
    if args.out:
        with open(args.out, "wb") as out:
            out.write(codec.dumps_sorted(f) + b"\n")
        print(f"-> {args.out}")
    return 0


def summary(f: dict[str, Any], name: str) -> list[str]:
    n = f["n"]
    lines = [
        f"tact evaluate: candidate {name} ({f['candidate']}) on {n:,} logged decisions of "
        f"{f['customers']:,} customers ({f['holdout_left_out']:,} holdout decisions left out)",
        f"  reward: {f['reward']} per decision",
        f"  {'':<8}{'value':>10}  {'95% interval':<22}{'vs logged':>10}  95% interval",
        f"  {'logged':<8}{f['logged']['value']:>10.3f}  "
        f"[{f['logged']['low']:.3f}, {f['logged']['high']:.3f}]",
    ]
    for label, key in _ROWS:
        e = f[key]
        interval = f"[{e['low']:.3f}, {e['high']:.3f}]"
        lines.append(
            f"  {label:<8}{e['value']:>10.3f}  {interval:<22}{e['vs_logged']:>+10.3f}  "
            f"[{e['vs_logged_low']:+.3f}, {e['vs_logged_high']:+.3f}]"
        )
    lines += [
        f"  effective sample size {f['ess']:,.0f} of {n:,} ({f['ess'] / n:.0%}); the candidate "
        f"could have made {f['support']:.0%} of the logged decisions; largest weight "
        f"{f['max_weight']:.1f}",
        "  the candidate's most likely arm is the logged one in "
        f"{f['candidate_top_matches'] / n:.0%} of decisions",
    ]
    if f["mean_weight"] < 0.9:
        lines.append(
            f"  mean weight {f['mean_weight']:.2f}: the candidate puts probability on arms the "
            "logging policy never chose, so IPS is biased low; trust SNIPS and DR"
        )
    if f["ess"] < 0.1 * n:
        lines.append(
            "  warning: the effective sample size is small: the candidate is far from what was "
            "logged, and these estimates rest on few decisions"
        )
    return lines
