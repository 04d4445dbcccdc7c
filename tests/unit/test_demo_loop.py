"""The live demo's yardsticks, in-process: what it compares the live worker with."""

from __future__ import annotations

from datetime import UTC, datetime

from app.cli.demo_loop import DAYS, SHOPPERS, Baseline, demo_world, not_learning
from app.engine import DecisionEngine
from app.policy import load_policy
from app.sample import demo_catalog
from app.simulate.run import EngineRun, world_catalog


def test_at_the_demos_size_learning_shows_against_the_engine_at_its_priors() -> None:
    """The demo shows tact learn by setting it beside the same engine kept at its priors, on
    the same shoppers: at the demo's default size the learning engine must add clearly more
    (in-process here, as the live worker does through Kafka)."""
    world = demo_world("default", SHOPPERS, DAYS, now=datetime(2026, 12, 4, tzinfo=UTC))
    catalog = world_catalog(world, demo_catalog())
    never = Baseline(world, catalog, seed=3)
    frozen = Baseline(world, catalog, 3, not_learning(catalog, 3))
    learning = Baseline(world, catalog, 3, EngineRun(DecisionEngine(catalog, load_policy(None), 3)))
    at_priors = frozen.final - never.final
    learned = learning.final - never.final
    assert at_priors > 0
    assert learned > 2 * at_priors, (learned, at_priors)
    # the traces the live line reads agree with the runs' totals
    assert frozen.profit_at(frozen.trace.times[-1]) == frozen.final
    assert never.profit_at(0.0) == 0.0
