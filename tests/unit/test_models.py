"""The online models: the fast scoring path is River's model, priors are where it starts,
checkpoints restore it exactly, and co-purchases are learned."""

from __future__ import annotations

import math
import random
import subprocess
import sys
from datetime import timedelta

import pytest

from app.context import return_features
from app.decisions import Decision
from app.engine import DecisionEngine
from app.models import PRIOR, PRIOR_SCALE, Affinity, Models, OnlineLogit
from app.policy import load_policy
from app.sample import demo_catalog, generate


@pytest.fixture(scope="module")
def learned() -> tuple[DecisionEngine, list[Decision], list[tuple[float, float]]]:
    """An engine that has learned from a stream, the decisions of its last part, and for
    every candidate (its score, River's prediction on its features) taken at decision time."""
    policy = load_policy(None)
    policy = policy.model_copy(
        update={"learning": policy.learning.model_copy(update={"batch_size": 8})}
    )  # small batches: the weights move while deciding
    engine = DecisionEngine(demo_catalog(), policy)
    # Arrivals over ten days: attribution windows (72 h) close all along the stream.
    events = list(generate(600, seed=4, arrival_span=timedelta(days=10)))
    half = len(events) // 2
    for event in events[:half]:
        engine.process(event)
    assert engine.models.accept.updates > 100
    decisions: list[Decision] = []
    pairs: list[tuple[float, float]] = []

    def hook(d: Decision) -> None:
        decisions.append(d)
        for c in d.candidates:
            assert d.readiness is not None
            river = engine.models.accept.model.predict_proba_one(c.features(d.readiness))
            pairs.append((c.p_accept, river[True]))

    engine.on_decision = hook
    start = engine.models.accept.updates
    for event in events[half:]:
        engine.process(event)
    assert engine.models.accept.updates > start  # the weights moved while deciding
    return engine, decisions, pairs


def test_fast_acceptance_scores_are_rivers_predictions(
    learned: tuple[DecisionEngine, list[Decision], list[tuple[float, float]]],
) -> None:
    _, _, pairs = learned
    assert len(pairs) > 200
    for ours, river in pairs:
        assert ours == pytest.approx(river, rel=1e-9, abs=1e-12)


def test_fast_return_scores_are_rivers_predictions() -> None:
    engine = DecisionEngine(demo_catalog())
    events = list(generate(300, seed=5, arrival_span=timedelta(days=10)))
    for event in events[: len(events) // 2]:
        engine.process(event)
    prior = engine.policy.priors.return_
    pairs: list[tuple[float, float]] = []

    def hook(d: Decision) -> None:  # River's prediction at decision time
        for c in d.candidates[:5]:
            assert d.readiness is not None
            product = c.offer.product
            logit = prior.base + prior.kind.get(product.kind, 0.0) + prior.risk * d.readiness.risk
            x = return_features(logit, product, d.readiness)
            pairs.append((c.p_return, engine.models.returns.model.predict_proba_one(x)[True]))

    engine.on_decision = hook
    for event in events[len(events) // 2 :]:
        engine.process(event)
    assert len(pairs) > 100
    for fast, river in pairs:
        assert fast == pytest.approx(river, rel=1e-9)


def test_a_new_model_predicts_its_prior() -> None:
    model = OnlineLogit()
    for logit in (-6.0, -2.0, 0.0, 1.5):
        p = model.predict_one({PRIOR: logit / PRIOR_SCALE, "ch:email": 1.0})
        assert p == pytest.approx(1 / (1 + math.exp(-logit)))


def test_outcomes_move_the_model_in_mini_batches() -> None:
    model = OnlineLogit(batch_size=4)
    x = {PRIOR: -3.0 / PRIOR_SCALE, "ch:email": 1.0}
    before = model.predict_one(x)
    for _ in range(3):
        model.learn_one(x, True)
    assert model.predict_one(x) == before and model.updates == 0  # still queued
    model.learn_one(x, True)
    assert model.predict_one(x) > before and model.updates == 4


def test_models_survive_a_checkpoint_exactly(
    learned: tuple[DecisionEngine, list[Decision], list[tuple[float, float]]],
) -> None:
    engine, _, _ = learned
    restored = Models.from_bytes(engine.models.to_bytes())
    assert restored.version == engine.models.version
    assert restored.accept.state() == engine.models.accept.state()
    assert restored.returns.state() == engine.models.returns.state()
    assert restored.affinity.pairs == engine.models.affinity.pairs
    assert restored.order_value.get() == engine.models.order_value.get()
    x = {PRIOR: -0.3, "ch:onsite_pdp": 1.0, "r:conf": 0.5}
    assert restored.accept.predict_one(x) == engine.models.accept.predict_one(x)


def test_affinity_learns_what_is_bought_together() -> None:
    affinity = Affinity()
    for _ in range(3):
        affinity.learn_order(["shoe", "sock", "insole"])
    affinity.learn_order(["shoe", "bottle"])
    assert affinity.top("shoe", 3) == ["insole", "sock", "bottle"]
    assert affinity.top("unknown", 3) == []
    affinity.learn_order(["lonely"])
    assert affinity.top("lonely", 3) == []


def test_affinity_top_is_the_same_cached_or_not_and_across_trims() -> None:
    """A row's top is at most 12 SKUs, ranked by count then SKU, whether it was ranked afresh,
    read from the cache, brought up to date from what moved since (several orders apart), or
    kept from the ranking that trimmed the row."""
    draw = random.Random(3)
    skus = [f"S{i:03d}" for i in range(80)]
    affinity = Affinity()
    trimmed = 0
    for _ in range(600):
        order = draw.sample(skus[: draw.choice((20, 80))], draw.randint(2, 12))
        before = sum(len(row) for row in affinity.pairs.values())
        affinity.learn_order(order)
        trimmed += sum(len(row) for row in affinity.pairs.values()) < before
        for sku in draw.sample(skus, 3):  # asked now and then, not after every order
            row = affinity.pairs.get(sku, {})
            want = sorted(row, key=lambda s: (-row[s], s))[:12]
            assert affinity.top(sku, 20) == want
            assert affinity.top(sku, 5) == want[:5]
    assert trimmed > 10  # rows were trimmed on the way


def test_river_proba_waits_for_its_first_use() -> None:
    """The engine's start leaves out `scipy.stats` (what `river.proba` imports, 0.3 s), and
    `river.proba` still works when something uses it."""
    code = (
        "import sys\n"
        "import app.engine, app.cli.replay\n"
        "assert 'scipy.stats' not in sys.modules, 'scipy.stats imported at start'\n"
        "from river import proba\n"
        "g = proba.Gaussian()\n"
        "g.update(1.0)\n"
        "g.update(3.0)\n"
        "assert g.mu == 2.0\n"
        "assert 'scipy.stats' in sys.modules\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
