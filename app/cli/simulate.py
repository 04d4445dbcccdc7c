"""`tact simulate`: the engine against the baselines on a simulated population."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from app import codec
from app.catalog import Catalog
from app.policy import load_policy
from app.sample import demo_catalog
from app.simulate.ledger import Ledger
from app.simulate.run import POLICIES, simulate
from app.simulate.world import load_world

_COLUMNS = (
    ("incremental", "incremental_profit", "{:>12,.0f}"),
    ("per cust.", "incremental_profit_per_customer", "{:>9.2f}"),
    ("profit", "profit", "{:>10,.0f}"),
    ("returns", "return_rate", "{:>8.1%}"),
    ("orders", "orders", "{:>7,}"),
    ("accepted", "offers_accepted", "{:>8,}"),
    ("subs", "subscriptions", "{:>5,}"),
    ("unsubs", "unsubscribes", "{:>6,}"),
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
        changes["customers"] = customers
    if days is not None:
        changes["days"] = days
    world = world.model_copy(update=changes)
    catalog = Catalog.from_jsonl(catalog_path) if catalog_path else demo_catalog()
    policy = load_policy(policy_path)
    unknown = sorted(set(policies) - set(POLICIES))
    if unknown:
        print(
            f"tact: unknown policies {unknown}; choose from {', '.join(POLICIES)}", file=sys.stderr
        )
        return 2
    chosen = tuple(p for p in POLICIES if p in policies)
    say = sys.stderr.write
    say(
        f"simulating {world.customers:,} customers over {world.days:g} days (seed {seed}), "
        f"policy {policy.version}: {', '.join(chosen)}\n"
    )

    def progress(name: str, ledger: Ledger) -> None:
        say(f"  {name:<7} {ledger.events:>9,} events in {ledger.seconds:6.1f} s\n")

    out_dir = Path(out) if out else None
    results = simulate(world, catalog, policy, seed, chosen, out_dir, progress)
    never = results.get("never")
    summaries = {name: ledger.summary(never) for name, ledger in results.items()}
    if as_json:
        print(codec.dumps_sorted(summaries).decode())
    else:
        _table(summaries, never is not None)
    if out_dir is not None:
        say(
            f"the engine's run is in {out_dir}/: events.jsonl, actions.jsonl, outcomes.jsonl"
            " (try `tact report` and `tact evaluate` on them)\n"
        )
    return 0


def _table(summaries: dict[str, dict[str, Any]], has_never: bool) -> None:
    head = f"{'policy':<8}" + "".join(
        f"{title:>{len(fmt.format(0)) + 1}}" for title, _, fmt in _COLUMNS
    )
    print(head)
    for name, s in summaries.items():
        print(f"{name:<8}" + "".join(" " + fmt.format(s[key]) for _, key, fmt in _COLUMNS))
    if not has_never:
        print("(incremental profit needs the `never` baseline; it is 0 here)")
        return
    print("incremental = profit - never's profit, on the same customers and draws")
    tact = summaries.get("tact")
    if tact is None:
        return
    others = {n: s for n, s in summaries.items() if n not in ("tact", "never")}
    beats = all(tact["incremental_profit"] > s["incremental_profit"] for s in others.values())
    beats = beats and tact["incremental_profit"] > 0
    print(f"tact beats every baseline on incremental profit: {'yes' if beats else 'NO'}")
    if "always" in summaries:
        lower = tact["return_rate"] <= summaries["always"]["return_rate"]
        print(
            f"tact's return rate {tact['return_rate']:.1%} vs always-upsell's "
            f"{summaries['always']['return_rate']:.1%}: {'no higher' if lower else 'HIGHER'}"
        )
