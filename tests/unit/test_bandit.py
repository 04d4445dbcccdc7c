"""Exploration: the probabilities are Thompson sampling's, the logged propensity is how often
the choice really is made, and exploration never leaves what the rules allow."""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np
import pytest

from app.bandit import Cells, Draw, contenders, uniform
from app.engine import DecisionEngine
from app.policy import load_policy
from app.sample import demo_catalog, generate
from tests.builders import Shopper
from tests.unit.test_rules import risky_customer

POLICY = load_policy(None)


def monte_carlo(
    means: list[float], sds: list[float], floor: float, n: int = 400_000
) -> list[float]:
    draws = np.random.default_rng(0).normal(means, sds, size=(n, len(means)))
    best, top = draws.argmax(axis=1), draws.max(axis=1)
    return [float(((best == i) & (top > floor)).mean()) for i in range(len(means))] + [
        float((top <= floor).mean())
    ]


def in_order(dist: dict[int, float], k: int) -> list[float]:
    """A Draw's distribution as monte_carlo lists it: arms 0..k-1, then protect (k)."""
    return [dist.get(i, 0.0) for i in range(k + 1)]


@pytest.mark.parametrize(
    ("means", "sds"),
    [
        ([1.0, 0.8], [0.5, 0.4]),
        ([2.8, 2.5, 1.0], [1.2, 0.9, 0.5]),
        ([0.3, 0.2, 0.5, 0.1, 0.25], [0.3, 0.2, 0.6, 0.1, 0.2]),  # protect likely
        ([0.9, 0.8, 0.7, 0.6, 0.5, 0.45], [0.4, 0.3, 0.5, 0.2, 0.6, 0.3]),  # six, as max_arms
    ],
)
def test_the_draw_is_thompson_sampling(means: list[float], sds: list[float]) -> None:
    dist = Draw(means, sds, 0.1, 6.0).distribution()  # z = 6: everything in contention
    assert in_order(dist, len(means)) == pytest.approx(monte_carlo(means, sds, 0.1), abs=4e-3)
    assert all(p >= 0 for p in dist.values()) and sum(dist.values()) == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("means", "sds", "z"),
    [
        ([0.3, 0.2, 0.5, 0.1, 0.25], [0.3, 0.2, 0.6, 0.1, 0.2], 2.5),
        ([5.0, 4.9, 1.0, 0.2], [0.5, 0.5, 0.2, 0.05], 2.5),  # protect out of contention
        ([0.2], [0.1], 2.5),
    ],
)
def test_the_logged_propensity_is_how_often_the_choice_is_made(
    means: list[float], sds: list[float], z: float
) -> None:
    """Every u in a fine grid picks what the whole distribution says, with its probability;
    so each choice is made for exactly its probability's share of u."""
    draw = Draw(means, sds, 0.1, z)
    dist = draw.distribution()
    grid = [(n + 0.5) / 20_000 for n in range(20_000)]
    made = Counter()
    for u in grid:
        index, p = Draw(means, sds, 0.1, z).pick(u)  # a fresh draw: lazily, as the engine
        assert p == dist[index] > 0
        made[index] += 1
    for index, p in dist.items():
        assert made[index] / len(grid) == pytest.approx(p, abs=1e-4)


def test_arms_out_of_contention_are_never_drawn() -> None:
    means, sds = [5.0, 4.9, 1.0, 0.2], [0.5, 0.5, 0.2, 0.05]
    assert contenders(means, sds, 0.1, 2.5) == [0, 1]  # protect and the weak arms are out
    dist = Draw(means, sds, 0.1, 2.5).distribution()
    assert set(dist) == {0, 1} and sum(dist.values()) == pytest.approx(1.0)
    assert Draw([0.5], [0.01], 0.1, 2.5).distribution() == {0: 1.0}  # sure: no draw at all
    assert Draw([], [], 0.1, 2.5).distribution() == {0: 1.0}  # nothing allowed: protect
    one = Draw([0.2], [0.1], 0.1, 2.5).distribution()  # one arm against protect
    assert one[0] == pytest.approx(monte_carlo([0.2], [0.1], 0.1)[0], abs=3e-3)


def test_the_uniform_is_deterministic_and_uniform() -> None:
    assert uniform(3, "abc") == uniform(3, "abc") != uniform(4, "abc")
    draws = np.array([uniform(0, f"a{i}") for i in range(20_000)])
    assert draws.min() >= 0 and draws.max() < 1 and abs(draws.mean() - 0.5) < 0.01


def test_cells_narrow_with_conversions() -> None:
    cells = Cells(prior_conversions=6, prior_trials=120)
    wide = cells.spread("new:low:low", "expand", "completeness")
    for i in range(400):
        cells.update("new:low:low", "expand", "completeness", i % 10 == 0)
    assert cells.spread("new:low:low", "expand", "completeness") < wide / 2
    assert cells.get(cells.key("new:low:low", "expand", "completeness")) == (400.0, 40.0)
    assert cells.spread("new:low:low", "expand", "convenience") == wide  # other cells untouched


def test_logged_propensity_is_how_often_the_choice_is_made() -> None:
    """One moment decided under many seeds: each arm is chosen as often as the propensity
    logged with it says. (What the product page before it offered, itself explored, is part
    of the cart's context: the runs are told apart by it.)"""
    s = Shopper("explorer")
    events = [s.view("RUN-WATCH-01"), s.read_reviews("RUN-WATCH-01"), s.add("RUN-WATCH-01")]
    Key = tuple[str, str | None, str | None, str]
    chosen: dict[tuple[Any, ...], Counter[Key]] = {}
    logged: dict[tuple[tuple[Any, ...], Key], float] = {}
    for seed in range(1500):
        engine = DecisionEngine(demo_catalog(), POLICY, seed=seed)
        for event in events[:-1]:
            engine.process(event)
        before = tuple(sorted((k, v[0]) for k, v in engine.customers[s.id].offered.items()))
        action = engine.process(events[-1])[0]  # the cart decision
        key = (action.play, action.offer_sku, action.frame, action.channel)
        chosen.setdefault(before, Counter())[key] += 1
        assert logged.setdefault((before, key), action.propensity) == action.propensity
    context, counts = max(chosen.items(), key=lambda kv: sum(kv[1].values()))
    runs = sum(counts.values())
    assert runs >= 500 and len(counts) >= 3, "no exploration at this moment"
    for key, n in counts.items():
        p = logged[(context, key)]
        assert abs(n / runs - p) < 4 * (p * (1 - p) / runs) ** 0.5 + 0.002, (key, n / runs, p)


def test_exploration_never_leaves_what_the_rules_allow() -> None:
    """With posteriors made very wide, exploration still never sends paid retargeting for
    a thin-margin item, nor anything above low intensity to a high-risk customer."""
    wide = POLICY.exploration.model_copy(update={"prior_conversions": 0.5, "prior_trials": 5.0})
    engine = DecisionEngine(demo_catalog(), POLICY.model_copy(update={"exploration": wide}))
    actions = [a for e in generate(1500, seed=9) for a in engine.process(e)]
    thin = {"RUN-CAP-01", "RUN-BELT-01", "RUN-BATT-4"}
    assert sum(a.propensity < 0.5 for a in actions) > 500  # it explored a lot
    assert any(a.offer_sku in thin for a in actions)
    assert not any(a.offer_sku in thin and a.channel == "paid_retargeting" for a in actions)
    # A customer who returns everything, decided for under many seeds.
    explored = 0
    for seed in range(60):
        engine = DecisionEngine(
            demo_catalog(), POLICY.model_copy(update={"exploration": wide}), seed=seed
        )
        decisions = []
        engine.on_decision = decisions.append
        for event in risky_customer():
            engine.process(event)
        risky = [d for d in decisions if d.segments is not None and d.segments.risk == "high"]
        assert risky
        for d in risky:
            explored += len(d.arms) > 1
            for action in d.actions:
                if action.play in ("expand", "commit"):
                    assert action.intensity == "low" and action.channel != "paid_retargeting"
    assert explored > 60  # the choices there were drawn, not fixed
