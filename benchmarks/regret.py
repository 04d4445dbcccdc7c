"""Where tact's decisions lose against a reference, valued by the world's truth.

In one simulated run of the engine, at every decision moment (a product view, a cart add, a
checkout, an order) a reference policy values every candidate it could make by the world's
truth as it knows it, before the engine decides; then what the engine did there is valued the
same way. Summed by moment and by what the engine did (an offer, fit guidance, nothing because
of a holdout, a cap or another protect), the difference shows where the profit went: the
ceiling knows each shopper's type for every item, the traits reference only what their traits,
plans and looks give (app/simulate/oracle.py), so against `traits` the regret is mostly what
knowing the shopper better, or choosing better, could win back at each moment (both are
greedy: neither is a bound on what an engine can earn over a run).

The values are greedy and of the moment (what the reference would earn there, not what the
run then earned), so their sum is not the incremental profit `tact simulate` prints; the
shares between rows are what to read.

    python -m benchmarks.regret [--world cameras] [--seed 0] [--reference traits]
                                [--by moment,did] [--customers N] [--rows 25]
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from typing import Any

from app.actions import relation_of
from app.decode import validate_object
from app.engine import DecisionEngine
from app.policy import load_policy
from app.sample import demo_catalog
from app.simulate.loop import Simulation
from app.simulate.oracle import KNOWS, Option, Oracle
from app.simulate.population import populate
from app.simulate.respond import moment_of
from app.simulate.run import EngineRun, world_catalog
from app.simulate.world import load_world
from schemas import Action, Envelope

KEYS = ("moment", "did", "best", "intensity", "channel", "sku", "best_sku")


class RegretRun(EngineRun):
    """The engine, each of its decision moments valued by `reference` as it goes."""

    def __init__(self, engine: DecisionEngine, reference: Oracle, by: tuple[str, ...]) -> None:
        super().__init__(engine)
        self.reference = reference
        self.by = by
        self.rows: dict[tuple[str, ...], list[float]] = defaultdict(lambda: [0, 0.0, 0.0])

    def bind(self, sim: Simulation) -> None:
        self.reference.bind(sim)

    def process(self, event: dict[str, Any]) -> list[Action]:
        e = validate_object(event)
        valued = self.reference.value_options(e)  # before the world takes the event in
        actions = super().process(event)
        if valued is not None:
            self._account(e, *valued, actions)
        return actions

    def _account(
        self, e: Envelope, moment: str, options: dict[Option, float], actions: list[Action]
    ) -> None:
        best_option, best = max(options.items(), key=lambda kv: kv[1], default=(None, 0.0))
        if best_option is None or best <= 0.0:
            best_option, best = None, 0.0
        value, did, intensity, channel, skus = 0.0, [], [], [], []
        # what tact made at this moment (an order's refill bookings are made with it)
        made = {moment, "refill"} if moment == "post_purchase" else {moment}
        for action in actions:
            if action.holdout or action.play == "protect" or moment_of(action) not in made:
                continue
            relation = relation_of(action.reasons, action.play)
            product = self.reference.catalog.get(action.offer_sku or "")
            if product is None:
                continue
            # when it is delivered, beyond the channel's own delay (quiet hours, a follow-up
            # or a refill booked for later)
            spec = self.reference.policy.channels[action.channel]
            waited = (action.not_before - action.ts).total_seconds() - spec.delay_hours * 3600.0
            delay = max(waited, 0.0)
            option = (
                relation,
                product,
                action.channel,
                action.frame or "",
                action.intensity,
                delay,
            )
            found = options.get(option)
            if found is None and relation == "self":  # assists are made at one intensity
                found = options.get((*option[:4], "low", delay))
            value += found if found is not None else self.reference.value_of(e, option)
            did.append(relation)
            intensity.append(action.intensity)
            channel.append(action.channel)
            skus.append(product.sku)
        labels = {
            "moment": moment,
            "did": "+".join(sorted(did)) or _nothing(actions),
            "best": best_option[0] if best_option else "nothing",
            "intensity": "+".join(intensity) or "-",
            "channel": "+".join(channel) or "-",
            "sku": "+".join(sorted(skus)) or "-",
            "best_sku": best_option[1].sku if best_option else "-",
        }
        row = self.rows[tuple(labels[k] for k in self.by)]
        row[0] += 1
        row[1] += value
        row[2] += best


def _nothing(actions: list[Action]) -> str:
    """Why the engine made nothing at the moment: a holdout, a cap, or another protect."""
    for action in actions:
        for reason in action.reasons:
            if reason.startswith("holdout:"):
                return reason
    for action in actions:
        if action.play == "protect":
            if any(r.startswith("drop:") and r.endswith(":cap") for r in action.reasons):
                return "nothing (capped)"
            codes = [r for r in action.reasons if r.startswith("protect:")]
            return codes[0] if codes else "protect"
    return "nothing"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--world", default="cameras")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--customers", type=int, help="shoppers (default: the world's)")
    parser.add_argument("--reference", default="traits", choices=KNOWS[:2])
    parser.add_argument("--by", default="moment,did", help=f"rows by any of {', '.join(KEYS)}")
    parser.add_argument("--rows", type=int, default=25, help="rows printed, most regret first")
    args = parser.parse_args(argv)
    by = tuple(k for k in args.by.split(",") if k)
    unknown = sorted(set(by) - set(KEYS))
    if unknown or not by:
        parser.error(f"--by: choose from {', '.join(KEYS)} (not {', '.join(unknown) or 'none'})")
    world = load_world(args.world)
    if args.customers:
        world = world.model_copy(update={"customers": args.customers})
    catalog = world_catalog(world, demo_catalog())
    policy = load_policy(None)
    run = RegretRun(
        DecisionEngine(catalog, policy, args.seed),
        Oracle(catalog, policy, args.seed, knows=args.reference),
        by,
    )
    customers = populate(world, catalog, args.seed)
    print(f"running tact in '{world.name}' seed {args.seed} ...", file=sys.stderr, flush=True)
    Simulation(world, catalog, customers, run, args.seed).run()
    run.finish()
    rows = sorted(run.rows.items(), key=lambda kv: kv[1][1] - kv[1][2])
    tact = sum(r[1] for r in run.rows.values())
    best = sum(r[2] for r in run.rows.values())
    print(
        f"decision moments valued by the {args.reference} reference: tact's choices {tact:,.0f}, "
        f"the reference's {best:,.0f}, regret {best - tact:,.0f}"
    )
    width = max(len(" / ".join(k)) for k, _ in rows[: args.rows]) if rows else 10
    print(
        f"{' / '.join(by):<{width}}  {'moments':>8} {'tact':>9} {'reference':>10} {'regret':>8}"
        "  share of the regret where tact falls short"
    )
    lost = sum(max(r[2] - r[1], 0.0) for r in run.rows.values())  # rows tact beats count 0
    for key, (n, value, ref) in rows[: args.rows]:
        share = (ref - value) / lost if lost else 0.0
        print(
            f"{' / '.join(key):<{width}}  {n:>8,.0f} {value:>9,.0f} {ref:>10,.0f} "
            f"{ref - value:>8,.0f} {share:>5.0%}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
