"""Decision quality: the engine against the baselines on the simulated population, over seeds.

For each seed, `tact simulate`'s closed loop runs the engine (default policy), the engine with
exploration and learning off (its priors alone), and the never / always / random baselines on
the same customers and draws. Printed per seed and as the mean and range over seeds:
incremental profit over never-upsell (total and per customer), return rate, unsubscribes,
channel spend. Nothing is asserted here (tests/unit/test_simulate.py holds the bar).

    python -m benchmarks.simulate --seeds 0,1,2,3,4 [--customers 3000] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from typing import Any

from app.policy import Policy, load_policy
from app.sample import demo_catalog
from app.simulate.run import simulate
from app.simulate.world import WorldSpec

_FIGURES = ("incremental_profit", "incremental_profit_per_customer", "return_rate")


def priors_only(policy: Policy) -> Policy:
    """The policy with no exploration and no learning: decisions on the priors alone."""
    return policy.model_copy(
        update={
            "exploration": policy.exploration.model_copy(update={"enabled": False}),
            "learning": policy.learning.model_copy(update={"enabled": False}),
        }
    )


def run_seed(world: WorldSpec, seed: int) -> dict[str, dict[str, Any]]:
    policy = load_policy(None)
    catalog = demo_catalog()
    results = simulate(world, catalog, policy, seed)
    never = results["never"]
    out = {name: ledger.summary(never) for name, ledger in results.items()}
    frozen = simulate(world, catalog, priors_only(policy), seed, policies=("tact",))["tact"]
    out["tact-priors"] = frozen.summary(never)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0,1,2,3,4")
    parser.add_argument("--customers", type=int, default=WorldSpec().customers)
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")]
    world = WorldSpec(customers=args.customers)
    per_seed: dict[int, dict[str, dict[str, Any]]] = {}
    started = time.perf_counter()
    for seed in seeds:
        per_seed[seed] = run_seed(world, seed)
        row = per_seed[seed]
        print(
            f"seed {seed}: "
            + "  ".join(
                f"{name} {s['incremental_profit']:+,.0f} ({s['return_rate']:.1%} returns)"
                for name, s in row.items()
                if name != "never"
            ),
            flush=True,
        )
    names = list(per_seed[seeds[0]])
    print(
        f"\n{world.customers:,} customers, {world.days:g} days, {len(seeds)} seeds "
        f"({time.perf_counter() - started:.0f} s); mean [min, max]"
    )
    summary: dict[str, dict[str, Any]] = {}
    for name in names:
        summary[name] = {}
        for figure in (*_FIGURES, "unsubscribes", "channel_cost"):
            values = [per_seed[s][name][figure] for s in seeds]
            summary[name][figure] = {
                "mean": statistics.fmean(values),
                "min": min(values),
                "max": max(values),
            }
        s = summary[name]
        print(
            f"  {name:<12} incremental {s['incremental_profit']['mean']:>+9,.0f} "
            f"[{s['incremental_profit']['min']:+,.0f}, {s['incremental_profit']['max']:+,.0f}]  "
            f"per customer {s['incremental_profit_per_customer']['mean']:+.2f}  "
            f"returns {s['return_rate']['mean']:.2%}  "
            f"unsubscribes {s['unsubscribes']['mean']:,.0f}  spend {s['channel_cost']['mean']:,.0f}"
        )
    wins = sum(
        per_seed[s]["tact"]["incremental_profit"]
        > max(0.0, *(per_seed[s][n]["incremental_profit"] for n in ("always", "random")))
        and per_seed[s]["tact"]["return_rate"] <= per_seed[s]["always"]["return_rate"]
        for s in seeds
    )
    print(
        "  the acceptance bar (beats all three, returns <= always's) held on "
        f"{wins}/{len(seeds)} seeds"
    )
    if args.json:
        with open(args.json, "w") as out:
            json.dump({"seeds": per_seed, "summary": summary}, out, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
