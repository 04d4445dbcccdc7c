"""Decision quality: tact against the ceiling in every built-in world, over seeds.

For each world of app/simulate/worlds/ and each seed, `tact simulate`'s closed loop runs the
engine (default policy), the ceiling (greedy on the world's truth: each shopper's traits, types
and plans), the traits reference (the same without the types: what a shopper's traits, plans
and looks give), the average-shopper reference (the true response model of the average
shopper), never-upselling and the baselines (always, widget, rules, random), on the same
shoppers and draws. Printed per world: each policy's incremental profit over never-upselling
and its share of the ceiling's (mean over seeds, with a 95% interval and the range), and the
bar of issue #9:

    tact earns >= 60% of the ceiling on average, is never below never-upselling on any seed,
    its return rate is at most never's + 1 point and its unsubscribes at most 2 x never's + 5

With --ablate, tact also runs with each of its decision changes switched off (same seeds), so
each change's worth shows as the drop in share when it is off. Nothing is asserted here (the
unit tests hold smaller bars); --json writes every figure.

    python -m benchmarks.simulate [--worlds default,cameras] [--seeds 0,1,2,3,4]
                                  [--customers N] [--ablate] [--json FILE] [--jobs 2]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from typing import Any

from app.policy import Policy, load_policy
from app.sample import demo_catalog
from app.simulate.run import POLICIES, simulate, world_catalog
from app.simulate.world import load_world, world_names

BAR = 0.60


def _accept(policy: Policy, **changes: float) -> Policy:
    """`policy` with these priors of acceptance changed."""
    accept = policy.priors.accept.model_copy(update=changes)
    return policy.model_copy(update={"priors": policy.priors.model_copy(update={"accept": accept})})


def ablations(policy: Policy) -> dict[str, Policy]:
    """The default policy with one decision change switched off at a time."""
    anyway = policy.priors.anyway
    off = 1e12
    return {
        "catalog-order": policy.model_copy(update={"offer_order": "catalog", "max_offers": 3}),
        "no-price-step": _accept(policy, price_step=0.0),
        "no-price-level": _accept(policy, price_level=0.0),
        "no-anyway": policy.model_copy(
            update={
                "priors": policy.priors.model_copy(
                    update={"anyway": anyway.model_copy(update={"enabled": False})}
                )
            }
        ),
        "prior-distraction": policy.model_copy(
            update={
                "distraction": policy.distraction.model_copy(
                    update={"prior_sd": 1e-9, "completion_weight": off}  # nothing learned
                ),
                "experiments": policy.experiments.model_copy(update={"distraction_test": 0.0}),
            }
        ),
        "absolute-distraction-sd": policy.model_copy(
            update={"distraction": policy.distraction.model_copy(update={"prior_sd_share": 100.0})}
        ),
        "budget-1-per-1000": policy.model_copy(
            update={
                "guardrails": policy.guardrails.model_copy(update={"unsubscribes_per_1000": 1.0})
            }
        ),
        "all-carts-complete": policy.model_copy(
            update={
                "distraction": policy.distraction.model_copy(
                    update={"completion_prior": 1.0, "completion_weight": off}
                )
            }
        ),
        "offers-not-remembered": _accept(policy, passed_days=0.0),
        "no-discount-habit": policy.model_copy(update={"discount_habit": 0.0}),
        "no-forgetting": policy.model_copy(
            update={
                "learning": policy.learning.model_copy(update={"memory": off}),
                "exploration": policy.exploration.model_copy(update={"memory": off}),
            }
        ),
        "no-holdouts": policy.model_copy(  # what measuring costs: nothing held back
            update={
                "holdout": policy.holdout.model_copy(update={"share": 0.0}),
                "experiments": policy.experiments.model_copy(
                    update={"play_holdouts": {}, "distraction_test": 0.0}
                ),
            }
        ),
        "priors-only": policy.model_copy(
            update={
                "exploration": policy.exploration.model_copy(update={"enabled": False}),
                "learning": policy.learning.model_copy(update={"enabled": False}),
            }
        ),
    }


def run_one(job: tuple[str, int, int | None, str]) -> tuple[str, int, str, dict[str, Any]]:
    """One world and seed: every reference policy, or one tact variant."""
    name, seed, customers, variant = job
    world = load_world(name)
    if customers:
        world = world.model_copy(update={"customers": customers})
    catalog = world_catalog(world, demo_catalog())
    policy = load_policy(None)
    if variant == "references":
        results = simulate(world, catalog, policy, seed, POLICIES)
        return name, seed, variant, {k: _figures(v) for k, v in results.items()}
    if variant != "tact":
        policy = ablations(policy)[variant]
    results = simulate(world, catalog, policy, seed, ("tact",))
    return name, seed, variant, {variant: _figures(results["tact"])}


def _figures(ledger: Any) -> dict[str, Any]:
    return {
        "profit": ledger.profit,
        "return_rate": ledger.return_rate,
        "unsubscribes": ledger.unsubscribes,
        "violations": ledger.violations,
        "derailed": ledger.derailed,
        "accepted": ledger.offers_accepted,
        "seconds": ledger.seconds,
    }


def _interval(values: list[float]) -> tuple[float, float]:
    """A 95% t-interval of the mean (seeds are few)."""
    if len(values) < 2:
        return values[0], values[0]
    t = {2: 12.71, 3: 4.30, 4: 3.18, 5: 2.78, 6: 2.57, 7: 2.45, 8: 2.36, 9: 2.31, 10: 2.26}
    half = t.get(len(values), 2.0) * statistics.stdev(values) / len(values) ** 0.5
    mean = statistics.fmean(values)
    return mean - half, mean + half


def summarise(runs: dict[str, dict[int, dict[str, dict[str, Any]]]]) -> dict[str, Any]:
    """Per world: each policy's incremental profit and share of the ceiling over seeds."""
    out: dict[str, Any] = {}
    for world, by_seed in runs.items():
        seeds = sorted(by_seed)
        names = list(by_seed[seeds[0]])
        rows: dict[str, Any] = {}
        for name in names:
            gains, shares = [], []
            for seed in seeds:
                row = by_seed[seed]
                never, ceiling = row["never"]["profit"], row["ceiling"]["profit"]
                gains.append(row[name]["profit"] - never)
                shares.append((row[name]["profit"] - never) / (ceiling - never))
            low, high = _interval(shares)
            rows[name] = {
                "incremental": statistics.fmean(gains),
                "incremental_min": min(gains),
                "share": statistics.fmean(shares),
                "share_interval": [low, high],
                "share_range": [min(shares), max(shares)],
                "return_rate": statistics.fmean(by_seed[s][name]["return_rate"] for s in seeds),
                "unsubscribes": statistics.fmean(by_seed[s][name]["unsubscribes"] for s in seeds),
            }
        tact = rows["tact"]
        never = rows["never"]
        rows["bar"] = {
            "share": tact["share"] >= BAR,
            "never_below_never": tact["incremental_min"] >= 0,
            "returns": all(
                by_seed[s]["tact"]["return_rate"] <= by_seed[s]["never"]["return_rate"] + 0.01
                for s in seeds
            ),
            "unsubscribes": all(
                by_seed[s]["tact"]["unsubscribes"] <= 2 * by_seed[s]["never"]["unsubscribes"] + 5
                for s in seeds
            ),
        }
        rows["bar"]["held"] = all(rows["bar"].values())
        out[world] = {"seeds": seeds, "policies": rows, "never_returns": never["return_rate"]}
    return out


def print_table(summary: dict[str, Any]) -> None:
    for world, data in summary.items():
        rows = data["policies"]
        print(f"\n{world} ({len(data['seeds'])} seeds)")
        print(
            f"  {'policy':<18}{'incremental':>12}  {'share of ceiling [95% CI]':<30}{'returns':>8}"
        )
        for name, row in rows.items():
            if name == "bar":
                continue
            low, high = row["share_interval"]
            share = f"{row['share']:6.0%} [{low:5.0%}, {high:5.0%}]"
            print(
                f"  {name:<18}{row['incremental']:>12,.0f}  {share:<30}{row['return_rate']:>8.1%}"
            )
        bar = rows["bar"]
        marks = "  ".join(f"{k} {'yes' if v else 'NO'}" for k, v in bar.items() if k != "held")
        print(f"  bar: {marks}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worlds", default=",".join(world_names()))
    parser.add_argument("--seeds", default="0,1,2,3,4")
    parser.add_argument("--customers", type=int, help="shoppers per world (default: its own)")
    parser.add_argument("--ablate", action="store_true", help="also run each ablation of tact")
    parser.add_argument("--jobs", type=int, default=2, help="processes (default 2)")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args(argv)
    worlds = [w for w in args.worlds.split(",") if w]
    seeds = [int(s) for s in args.seeds.split(",")]
    variants = ["references", *(ablations(load_policy(None)) if args.ablate else {})]
    jobs = [(w, s, args.customers, v) for w in worlds for s in seeds for v in variants]
    runs: dict[str, dict[int, dict[str, dict[str, Any]]]] = {}
    started = time.perf_counter()
    with ProcessPoolExecutor(max(args.jobs, 1)) as pool:
        for done, (world, seed, _, figures) in enumerate(pool.map(run_one, jobs), start=1):
            runs.setdefault(world, {}).setdefault(seed, {}).update(figures)
            print(f"  [{done}/{len(jobs)}] {world} seed {seed}", file=sys.stderr, flush=True)
    summary = summarise(runs)
    print_table(summary)
    held = sum(data["policies"]["bar"]["held"] for data in summary.values())
    print(
        f"\nthe bar held in {held} of {len(summary)} worlds ({time.perf_counter() - started:.0f} s)"
    )
    if args.json:
        with open(args.json, "w") as out:
            json.dump({"runs": runs, "summary": summary}, out, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
