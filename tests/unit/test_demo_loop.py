"""The live demo's yardsticks, in-process: what it compares the live worker with."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from app.cli.demo_loop import DAYS, SHOPPERS, Baseline, demo_world, not_learning, periods
from app.engine import DecisionEngine
from app.policy import load_policy
from app.sample import demo_catalog
from app.simulate.run import EngineRun, world_catalog


def test_at_the_demos_size_learning_shows_against_the_engine_at_its_priors() -> None:
    """The demo shows tact learn by setting it beside the same engine kept at its priors, on
    the same shoppers: at the demo's default size the learning engine must add more on every
    seed (half as much again) and clearly more over a few (the demo draws its seed from the
    clock; in-process here, as the live worker does through Kafka)."""
    world = demo_world("default", SHOPPERS, DAYS, now=datetime(2026, 12, 4, tzinfo=UTC))
    catalog = world_catalog(world, demo_catalog())
    added = []  # per seed: (learning, at its priors) over never upselling
    for seed in (1, 2, 3):
        never = Baseline(world, catalog, seed=seed)
        frozen = Baseline(world, catalog, seed, not_learning(catalog, seed))
        engine = DecisionEngine(catalog, load_policy(None), seed)
        learning = Baseline(world, catalog, seed, EngineRun(engine))
        added.append((learning.final - never.final, frozen.final - never.final))
    assert all(learned > 1.5 * at_priors > 0 for learned, at_priors in added), added
    assert sum(a[0] for a in added) > 2 * sum(a[1] for a in added), added
    learned, at_priors = added[-1]
    # the by-period table: its rows add up to what each run added over never upselling
    start = datetime.fromisoformat(world.start).timestamp()
    rows = periods(start, DAYS, learning.trace, frozen.trace, never.trace)
    assert [(a, b) for a, b, _, _ in rows] == [
        (0.0, 4.0),
        (4.0, 8.0),
        (8.0, 12.0),
        (12.0, 16.0),
        (16.0, 20.0),
    ]
    assert sum(r[2] for r in rows) == pytest.approx(learned)
    assert sum(r[3] for r in rows) == pytest.approx(at_priors)
    assert rows[-1][2] - rows[-1][3] > rows[0][2] - rows[0][3]  # the gap opens with time


def test_the_demos_command_line_defaults_are_the_demos_size() -> None:
    from app.cli import build_parser

    args = build_parser().parse_args(["demo", "--world"])
    assert args.days == DAYS and args.customers is None  # None: SHOPPERS for a --world
