"""Changes of what is learned, as operations (app/models.py `Models.change`): a decision worker
can record them for the one process that learns instead of applying them to its own models.
Applied at once, or recorded and applied after a trip through JSON, they teach the models the
same; recorded, they leave the models as loaded; split among workers by customer, they are
the same changes, and folded in one canonical order they give the same models."""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta
from typing import Any

import pytest

from app import codec
from app.actions import encode, encode_outcome
from app.engine import DecisionEngine
from app.guardrail import UnsubscribeBudget
from app.models import Models
from app.partitioning import partition_of
from app.policy import load_policy
from app.replay import Replayer
from app.sample import demo_catalog, generate
from tests.builders import Shopper

# Every change the stream below makes (an unsubscribe naming an action: its own test).
KINDS = {
    "accept",
    "returns",
    "organic",
    "cell",
    "completion",
    "order",
    "view",
    "view_bought",
    "episode",
    "watch",
    "settle",
    "arrived",
    "message",
}


@pytest.fixture(scope="module")
def stream() -> list[dict[str, Any]]:
    events = list(generate(1200, seed=5, arrival_span=timedelta(days=30)))
    # a watch bought its add-on while watched: the watch settles
    s = Shopper("c-follow", start="2026-02-01T10:00:00")
    bought = [s.view("RUN-WATCH-01"), s.order("RUN-WATCH-01")]
    s.wait(days=2)
    return [*events, *bought, s.view("RUN-STRAP-01"), s.order("RUN-STRAP-01")]


def run(
    engine: DecisionEngine, events: list[dict[str, Any]], end: float | None = None
) -> list[bytes]:
    """Actions and Outcomes; windows close up to `end` (default: the latest event time) and
    what is still open then closes censored."""
    out = [encode(a) for e in events for a in engine.process(e)]
    if end is not None:
        engine.attribution.advance(end, engine.customers)
    out += [encode_outcome(o) for o in engine.take_outcomes()]
    return out + [encode_outcome(o) for o in engine.flush(end)]


def learned(models: Models) -> bytes:
    """Everything learned (not the watermark, each worker's own; nor the unsubscribe price,
    derived from the counts and the time)."""
    core = models.core_state()
    del core["watermark"]
    for derived in ("priced_at", "price", "costs"):
        del core["unsubscribes"][derived]
    return codec.dumps({**core, "affinity": models.affinity.pairs, "cells": models.cells.state()})


def test_changes_applied_after_a_trip_through_json_teach_what_direct_changes_do(
    stream: list[dict[str, Any]],
) -> None:
    direct = DecisionEngine(demo_catalog())
    plain = run(direct, stream)
    journaled = DecisionEngine(demo_catalog())
    kinds: Counter[str] = Counter()

    def sink(op: tuple[Any, ...]) -> None:
        kinds[op[0]] += 1
        journaled.models.apply(codec.loads(codec.dumps(op)))

    journaled.models.sink = sink
    assert run(journaled, stream) == plain
    assert learned(journaled.models) == learned(direct.models)
    assert set(kinds) == KINDS, set(kinds) ^ KINDS


def test_recorded_changes_leave_the_models_as_loaded(stream: list[dict[str, Any]]) -> None:
    engine = DecisionEngine(demo_catalog())
    before = learned(engine.models)
    journal: list[tuple[Any, ...]] = []
    engine.models.sink = journal.append
    run(engine, stream)
    assert learned(engine.models) == before
    assert {op[0] for op in journal} == KINDS


def test_changes_split_among_workers_are_one_workers_and_fold_to_the_same_models(
    stream: list[dict[str, Any]],
) -> None:
    """Three workers deciding from the same models, each on its customers, record the same
    changes as one worker on all of them, once their windows have closed at the same time;
    folded in one canonical order (changes sorted by their JSON), they give the same models."""
    end = max(datetime.fromisoformat(e["ts"]) for e in stream).timestamp()

    def journal_of(events: list[dict[str, Any]]) -> list[bytes]:
        engine = DecisionEngine(demo_catalog())
        journal: list[tuple[Any, ...]] = []
        engine.models.sink = journal.append
        run(engine, events, end)
        return [codec.dumps(op) for op in journal]

    one = journal_of(stream)
    three = [
        op
        for p in range(3)
        for op in journal_of([e for e in stream if partition_of(e["customer_id"], 3) == p])
    ]
    assert Counter(three) == Counter(one)

    def fold(journal: list[bytes]) -> bytes:
        models = DecisionEngine(demo_catalog()).models
        for op in sorted(journal):
            models.apply(codec.loads(op))
        return learned(models)

    assert fold(three) == fold(one)
    assert fold(one) != learned(DecisionEngine(demo_catalog()).models)


def test_an_unsubscribe_is_a_change_and_an_unknown_change_is_refused() -> None:
    models = Models("m1")
    journal: list[tuple[Any, ...]] = []
    models.sink = journal.append
    budget = UnsubscribeBudget(load_policy(None), models.unsubscribes, models.change)
    budget.message("email")
    budget.unsubscribe("email", 1_000.0)
    assert journal == [("message", "email"), ("unsubscribe", "email")]
    assert models.unsubscribes.sent == {} and models.unsubscribes.unsubscribed == {}
    learner = Models("m1")
    for op in journal:
        learner.apply(list(op))
    assert learner.unsubscribes.sent == {"email": 1.0}
    assert learner.unsubscribes.unsubscribed == {"email": 1.0}
    with pytest.raises(ValueError, match="not a change of the models"):
        learner.apply(["forget", "everything"])


def test_each_change_moves_its_own_part_of_the_models() -> None:
    """Applied to fresh models, each operation changes the part it names."""
    x = {"prior": -0.4, "ch:email": 1.0}
    cases: list[tuple[list[Any], Any]] = [
        (["accept", x, True], lambda m: len(m.accept.queue)),
        (["returns", x, False], lambda m: len(m.returns.queue)),
        (["organic", x, True], lambda m: len(m.organic.queue)),
        (["cell", "new:low:low", "expand", "completeness", True], lambda m: m.cells.state()),
        (["completion", "cart", "low", True], lambda m: m.completion.state()),
        (["order", 80.0, ["A", "B"]], lambda m: (m.order_value.n, m.affinity.pairs)),
        (["view"], lambda m: m.anyway.views),
        (["view_bought"], lambda m: m.anyway.views[1]),
        (["episode", "20400", 1], lambda m: m.anyway.refill_due),
        (["watch", "accessories|0", "20400"], lambda m: m.anyway.started),
        (["arrived", 5.0], lambda m: (m.unsubscribes.customers, m.unsubscribes.first_t)),
        (["message", "sms"], lambda m: m.unsubscribes.sent),
        (["unsubscribe", "sms"], lambda m: m.unsubscribes.unsubscribed),
    ]
    expected = [
        1,
        1,
        1,
        {"new:low:low|expand|completeness": [1.0, 1.0]},
        {"cart|low": [1.0, 1.0]},
        (1, {"A": {"B": 1.0}, "B": {"A": 1.0}}),
        [1.0, 0.0],
        1.0,
        {"20400": [0.0, 1.0]},
        {"accessories|0": {"20400": 1.0}},
        (1, 5.0),
        {"sms": 1.0},
        {"sms": 1.0},
    ]
    for (op, part), want in zip(cases, expected, strict=True):
        models = Models("m1")
        models.apply(op)
        assert part(models) == want, op
    settled = Models("m1")
    for op in (["watch", "accessories|1", "20400"], ["settle", "accessories|1", "20400", 2.5, 1.0]):
        settled.apply(op)
    assert settled.anyway.follow == {"accessories|1": [1.0, 2.5]}
    assert settled.anyway.started == {"accessories|1": {"20400": 0.0}}


def test_a_replay_on_the_learners_cadence_learns_everything_only_when_it_publishes(
    stream: list[dict[str, Any]],
) -> None:
    """`tact replay --learner`: what is learned reaches the models at publications in event
    time (app/replay.py `Publications`), so the models an Action names change only there;
    the replay is deterministic, and nothing learned is lost on the way."""
    lines = [codec.dumps(e) for e in sorted(stream, key=lambda e: e["ts"])]

    def replay(learner: bool) -> tuple[list[bytes], Replayer]:
        replayer = Replayer(DecisionEngine(demo_catalog()), learner=learner)
        actions: list[bytes] = []
        outcomes: list[bytes] = []
        replayer.run(lines, actions.append, outcomes.append, write_outcome=outcomes.append)
        return actions + outcomes, replayer

    first, replayer = replay(learner=True)
    assert replay(learner=True)[0] == first
    publications = replayer.publications
    assert publications is not None and publications.published > 10
    versions = [codec.loads(line)["model_version"] for line in first if b'"not_before"' in line]
    numbers = [int(v.rsplit(".v", 1)[1]) if ".v" in v else 0 for v in versions]
    assert numbers == sorted(numbers) and len(set(numbers)) > 10
    # each publication is one version: the models did not move between two publications
    assert len(set(versions)) == len(set(numbers))
    at_once = replay(learner=False)[1].engine.models
    models = replayer.engine.models
    assert not publications.pending and models.sink is None  # (learning at once again)
    # what does not depend on the decisions is learned exactly as at once: each customer's
    # arrival, each order
    assert models.unsubscribes.customers == at_once.unsubscribes.customers > 1000
    assert models.order_value.n == at_once.order_value.n > 0


def test_models_made_from_what_changed_are_the_models_made_from_every_field(
    stream: list[dict[str, Any]],
) -> None:
    """A worker swapping in a newer publication reads only the fields it changed
    (`Models.from_fields(changed, base)`): the cells and co-purchase rows left out are the
    base's, and the models are those made from every field."""
    engine = DecisionEngine(demo_catalog())
    half = len(stream) // 2
    run(engine, stream[:half])
    fields = dict(engine.models_changes())
    base = Models.from_fields(fields)
    for sku in base.affinity.pairs:  # (rankings cached: those of rows unchanged carry over)
        base.affinity.top(sku, 3)
    run(engine, stream[half : half + 300])
    changed = dict(engine.models_changes())
    rows = [f for f in fields if f.startswith("affinity:")]
    assert 0 < sum(f in changed for f in rows) < len(rows)  # some rows moved, not all
    for without in ((), ("cells",)):  # (a publication that left the cells as they were)
        now = {k: v for k, v in changed.items() if k not in without}
        whole = Models.from_fields({**fields, **now})
        # (the same rows, perhaps in another order: nothing reads them in order)
        assert codec.loads(learned(Models.from_fields(now, base))) == codec.loads(learned(whole))
    made = Models.from_fields(changed, base)
    for sku in made.affinity.pairs:
        assert made.affinity.top(sku, 5) == whole.affinity.top(sku, 5)


def test_a_replay_that_never_reaches_its_cadence_learns_everything_at_its_end(
    stream: list[dict[str, Any]],
) -> None:
    """Publications that never come due: every Action is decided by the models as loaded,
    and what was learned reaches them at the end, folded in the order it was learned."""
    lines = [codec.dumps(e) for e in sorted(stream, key=lambda e: e["ts"])]
    policy = load_policy(None)
    never = policy.model_copy(
        update={
            "learning": policy.learning.model_copy(
                update={"snapshot_changes": 10**9, "snapshot_seconds": 1e12}
            )
        }
    )
    replayer = Replayer(DecisionEngine(demo_catalog(), never), learner=True)
    actions: list[bytes] = []
    replayer.run(lines, actions.append, actions.append)
    assert {codec.loads(a)["model_version"] for a in actions} == {"m1.0"}
    assert replayer.publications is not None and replayer.publications.published == 1
    recording = DecisionEngine(demo_catalog(), never)  # decides the same: nothing learned
    journal: list[tuple[Any, ...]] = []
    recording.models.sink = journal.append
    Replayer(recording).run(lines, lambda line: None, lambda line: None)
    folded = DecisionEngine(demo_catalog(), never).models
    for op in journal:
        folded.apply(op)
    assert learned(replayer.engine.models) == learned(folded)
    assert learned(folded) != learned(DecisionEngine(demo_catalog(), never).models)
