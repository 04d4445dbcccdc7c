"""`simulate`: the engine and the baselines, each in a closed loop on the same population.

    results = simulate(load_world("default"), demo_catalog(), load_policy(None), seed=0)
    results["tact"].profit - results["never"].profit   # incremental profit of the engine
    (results["tact"].profit - results["never"].profit) / (
        results["ceiling"].profit - results["never"].profit)  # its share of the ceiling

With `out`, the engine's run is written as files `tact report` and `tact evaluate` read:
events.jsonl (everything the engine saw), actions.jsonl, outcomes.jsonl, and catalog.jsonl.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from app import codec
from app.actions import encode_line, encode_outcome_line
from app.catalog import Catalog, Product
from app.engine import DecisionEngine
from app.errors import ConfigurationError
from app.policy import Policy
from app.simulate.baselines import BASELINES
from app.simulate.ledger import Ledger
from app.simulate.loop import Simulation
from app.simulate.oracle import KNOWS, Oracle
from app.simulate.population import populate
from app.simulate.world import WorldSpec
from schemas import Action

REFERENCES = KNOWS  # ceiling, traits, average
POLICIES = ("tact", *REFERENCES, *BASELINES)


class EngineRun:
    """The engine as a simulated policy; its outcomes go to `on_outcome` as they close."""

    name = "tact"

    def __init__(
        self, engine: DecisionEngine, on_outcome: Callable[[bytes], object] | None = None
    ) -> None:
        self.engine = engine
        self.on_outcome = on_outcome
        self.outcomes = 0

    def process(self, event: dict[str, Any]) -> list[Action]:
        actions = self.engine.process(event)
        self._drain(self.engine.take_outcomes())
        return actions

    def finish(self) -> None:
        self._drain(self.engine.flush())

    def _drain(self, outcomes: list[Any]) -> None:
        self.outcomes += len(outcomes)
        if self.on_outcome is not None:
            for outcome in outcomes:
                self.on_outcome(encode_outcome_line(outcome))


def simulate(
    world: WorldSpec,
    catalog: Catalog,
    policy: Policy,
    seed: int = 0,
    policies: tuple[str, ...] = POLICIES,
    out: Path | None = None,
    progress: Callable[[str, Ledger], None] | None = None,
) -> dict[str, Ledger]:
    """Run each of `policies` on the same customers; returns their ledgers by name."""
    customers = populate(world, catalog, seed)
    results: dict[str, Ledger] = {}
    for name in policies:
        with contextlib.ExitStack() as stack:
            on_event = on_action = None
            if name == "tact":
                engine = DecisionEngine(catalog, policy, seed)
                sinks = _sinks(stack, out, catalog) if out is not None else None
                runner: Any = EngineRun(engine, sinks["outcomes"].write if sinks else None)
                if sinks:
                    on_event = _writer(sinks["events"], codec.dumps_line)
                    on_action = _writer(sinks["actions"], encode_line)
            elif name in REFERENCES:
                runner = Oracle(catalog, policy, seed, knows=name)
            else:
                runner = BASELINES[name](catalog, policy, seed)
            sim = Simulation(world, catalog, customers, runner, seed, on_event, on_action)
            ledger = sim.run()
            if isinstance(runner, EngineRun):
                runner.finish()
        results[name] = ledger
        if progress is not None:
            progress(name, ledger)
    return results


def world_catalog(world: WorldSpec, fallback: Catalog) -> Catalog:
    """The world's own catalog when it has one (its `item_types` must name SKUs of it)."""
    catalog = Catalog.from_specs(world.catalog) if world.catalog else fallback
    unknown = sorted(sku for sku in world.item_types if sku not in catalog)
    if unknown:
        raise ConfigurationError(
            f"world {world.name!r}: item_types names SKUs not in its catalog: {', '.join(unknown)}"
        )
    return catalog


def _writer(sink: Any, encode: Callable[[Any], bytes]) -> Callable[[Any], None]:
    def write(item: Any) -> None:
        sink.write(encode(item))

    return write


def write_catalog(catalog: Catalog, path: Path) -> Path:
    """The catalog as a catalog file (JSONL, by SKU)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as lines:
        for product in sorted(catalog.products.values(), key=lambda p: p.sku):
            lines.write(codec.dumps_line(product_json(product)))
    return path


def _sinks(stack: contextlib.ExitStack, out: Path, catalog: Catalog) -> dict[str, Any]:
    write_catalog(catalog, out / "catalog.jsonl")  # what `tact report` reads beside them
    return {
        kind: stack.enter_context((out / f"{kind}.jsonl").open("wb", buffering=1 << 20))
        for kind in ("events", "actions", "outcomes")
    }


def product_json(product: Product) -> dict[str, Any]:
    """A catalog line for `product` (the catalog file's format)."""
    related: dict[str, list[str]] = {}
    for relation, sku in product.related:
        related.setdefault(relation, []).append(sku)
    line: dict[str, Any] = {
        "sku": product.sku,
        "title": product.title,
        "category": product.category,
        "price": product.price,
        "unit_cost": product.unit_cost,
        "kind": product.kind,
    }
    if product.refill_days:
        line["refill_days"] = product.refill_days
    if related:
        line["related"] = related
    return line
