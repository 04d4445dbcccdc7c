"""`tact simulate`: the engine, the ceiling and the baselines on a simulated population."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from app import codec
from app.catalog import Catalog
from app.policy import load_policy
from app.sample import demo_catalog
from app.simulate.ledger import Ledger
from app.simulate.run import POLICIES, simulate, world_catalog
from app.simulate.world import load_world

_COLUMNS = (
    ("incremental", "incremental_profit", "{:>12,.0f}"),
    ("per cust.", "incremental_profit_per_customer", "{:>9.2f}"),
    ("of ceiling", "share_of_ceiling", "{:>10}"),
    ("returns", "return_rate", "{:>8.1%}"),
    ("orders", "orders", "{:>7,}"),
    ("accepted", "offers_accepted", "{:>8,}"),
    ("subs", "subscriptions", "{:>5,}"),
    ("unsubs", "unsubscribes", "{:>6,}"),
    ("derailed", "derailed", "{:>8,}"),
    ("skipped", "visits_skipped", "{:>7,}"),
    ("spend", "channel_cost", "{:>8,.0f}"),
)


def run_simulate(
    customers: int | None,
    days: float | None,
    seed: int,
    world_path: str | None,
    policy_path: str | None,
    catalog_path: str | None,
    out: str | None,
    policies: list[str],
    as_json: bool,
) -> int:
    world = load_world(world_path)
    changes: dict[str, Any] = {}
    if customers is not None:
        if customers < 10:
            print("tact: --customers must be at least 10", file=sys.stderr)
            return 2
        changes["customers"] = customers
    if days is not None:
        if days <= 1:
            print("tact: --days must be more than 1", file=sys.stderr)
            return 2
        changes["days"] = days
    world = world.model_copy(update=changes)
    catalog = (
        Catalog.from_jsonl(catalog_path) if catalog_path else world_catalog(world, demo_catalog())
    )
    policy = load_policy(policy_path)
    chosen_names = list(POLICIES) if policies == ["all"] else policies
    unknown = sorted(set(chosen_names) - set(POLICIES))
    if unknown:
        print(
            f"tact: unknown policies {unknown}; choose from {', '.join(POLICIES)}", file=sys.stderr
        )
        return 2
    chosen = tuple(p for p in POLICIES if p in chosen_names)
    say = sys.stderr.write
    say(
        f"simulating {world.customers:,} shoppers over {world.days:g} days in world "
        f"{world.name!r} (seed {seed}), policy {policy.version}: {', '.join(chosen)}\n"
    )

    def progress(name: str, ledger: Ledger) -> None:
        say(f"  {name:<8} {ledger.events:>9,} events in {ledger.seconds:6.1f} s\n")

    out_dir = Path(out) if out else None
    results = simulate(world, catalog, policy, seed, chosen, out_dir, progress)
    never = results.get("never")
    summaries = {name: ledger.summary(never) for name, ledger in results.items()}
    ceiling = summaries.get("ceiling")
    for summary in summaries.values():
        summary["share_of_ceiling"] = share(summary, ceiling)
    if as_json:
        print(codec.dumps_sorted(summaries).decode())
    else:
        _table(summaries, never is not None, ceiling is not None)
    if out_dir is not None:
        say(
            f"the engine's run is in {out_dir}/: events.jsonl, actions.jsonl, outcomes.jsonl,"
            " catalog.jsonl (try `tact report` and `tact evaluate` on them)\n"
        )
    return 0


def share(summary: dict[str, Any], ceiling: dict[str, Any] | None) -> float | None:
    """A policy's incremental profit as a share of the ceiling's (None without a ceiling, or
    when the ceiling earns nothing)."""
    if ceiling is None or ceiling["incremental_profit"] <= 0:
        return None
    earned: float = summary["incremental_profit"]
    return round(earned / float(ceiling["incremental_profit"]), 4)


def _table(summaries: dict[str, dict[str, Any]], has_never: bool, has_ceiling: bool) -> None:
    head = f"{'policy':<8}" + "".join(
        f"{title:>{len(fmt.format(0)) + 1}}" for title, _, fmt in _COLUMNS
    )
    print(head)
    for name, s in summaries.items():
        cells = []
        for _, key, fmt in _COLUMNS:
            value = s[key]
            if key == "share_of_ceiling":
                value = "-" if value is None else f"{value:.0%}"
            cells.append(" " + fmt.format(value))
        print(f"{name:<8}" + "".join(cells))
    if not has_never:
        print("(incremental profit needs the `never` baseline; it is 0 here)")
        return
    print("incremental = profit - never's profit, on the same shoppers and draws")
    if has_ceiling:
        print(
            "of ceiling = incremental profit / the ceiling's (a greedy policy that knows each "
            "shopper's traits, types and plans)"
        )
