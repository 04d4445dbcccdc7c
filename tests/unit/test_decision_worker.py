"""The worker's batch loop with the in-memory store and a collecting sender (no broker):
crash between send and checkpoint, redelivery, and eviction of cached states."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any

import pytest

from agents.worker import DecisionWorker, Headers
from app import codec
from app.actions import encode
from app.engine import DecisionEngine
from app.pipeline import BatchPipeline, Record
from app.policy import Policy, load_policy
from app.sample import demo_catalog, generate
from app.settings import Settings
from app.store import InMemoryStateStore
from schemas import FAMILY_OF_TYPE


class Broker:
    """Collects what is sent; can fail the Nth send as a crash would."""

    def __init__(self, fail_at: int | None = None) -> None:
        self.sent: list[tuple[str, bytes | None, bytes | None]] = []
        self.fail_at = fail_at

    async def send(
        self, topic: str, key: bytes | None, value: bytes | None, headers: Headers | None
    ) -> Awaitable[Any]:
        if self.fail_at is not None and len(self.sent) == self.fail_at:
            raise ConnectionError("broker went away")
        self.sent.append((topic, key, value))
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done

    def actions(self) -> list[bytes]:
        return [v for t, _, v in self.sent if t == "actions" and v is not None]


def settings(**overrides: Any) -> Settings:
    return Settings(metrics_port=0, **overrides)


def as_records(events: list[dict[str, Any]]) -> list[Record]:
    offsets = {"clickstream": 0, "orders": 0}
    out = []
    for e in events:
        topic = FAMILY_OF_TYPE[e["type"]]
        out.append(Record(topic, 0, offsets[topic], e["customer_id"].encode(), codec.dumps(e)))
        offsets[topic] += 1
    return out


def frozen() -> Policy:
    """Learning off: decisions depend only on each customer's own events, so a restarted or
    evicting worker must reproduce them exactly (with learning on, global models may learn in
    a different order after a restart; action ids still match)."""
    policy = load_policy(None)
    return policy.model_copy(
        update={"learning": policy.learning.model_copy(update={"enabled": False})}
    )


def worker(
    store: InMemoryStateStore, broker: Broker, policy: Policy | None = None, **overrides: Any
) -> DecisionWorker:
    s = settings(**overrides)
    pipeline = BatchPipeline(
        DecisionEngine(demo_catalog(), policy), s.input_topics, s.max_event_bytes
    )
    return DecisionWorker(s, store, pipeline, broker.send)


def expected(events: list[dict[str, Any]], policy: Policy | None = None) -> list[bytes]:
    engine = DecisionEngine(demo_catalog(), policy)
    return [encode(a) for e in events for a in engine.process(e)]


def run_batches(w: DecisionWorker, records: list[Record], size: int) -> None:
    async def go() -> None:
        for i in range(0, len(records), size):
            assert await w.handle(records[i : i + size])

    asyncio.run(go())


EVENTS = list(generate(300, seed=8))


def test_batches_give_the_engines_actions_in_order() -> None:
    broker = Broker()
    run_batches(worker(InMemoryStateStore(), broker), as_records(EVENTS), 64)
    assert broker.actions() == expected(EVENTS)


def test_crash_between_send_and_checkpoint_then_full_redelivery() -> None:
    store, records = InMemoryStateStore(), as_records(EVENTS)
    crashing = Broker(fail_at=405)
    with pytest.raises(ConnectionError):
        run_batches(worker(store, crashing, frozen()), records, 64)
    assert store.commits > 0 and crashing.actions()
    assert crashing.sent[-1][0] == "actions"  # the crash fell inside a batch's sends

    # A new process; Kafka redelivers from the start (its commits may lag the checkpoint).
    restarted = Broker()
    run_batches(worker(store, restarted, frozen()), records, 50)
    delivered = crashing.actions() + restarted.actions()
    want = expected(EVENTS, frozen())
    assert sorted(set(delivered)) == sorted(want)  # nothing lost, nothing changed
    assert len(delivered) > len(want)  # the batch in flight at the crash was sent again


def test_with_learning_on_a_restart_keeps_every_action_id() -> None:
    store, records = InMemoryStateStore(), as_records(EVENTS)
    crashing = Broker(fail_at=400)
    with pytest.raises(ConnectionError):
        run_batches(worker(store, crashing), records, 64)
    restarted = Broker()
    run_batches(worker(store, restarted), records, 50)
    ids = {codec.loads(a)["action_id"] for a in crashing.actions() + restarted.actions()}
    decision_ids = {
        codec.loads(a)["action_id"]
        for a in expected(EVENTS)
        if "seq:" not in codec.loads(a)["reasons"][-1]
    }
    assert decision_ids <= ids


def test_evicted_states_are_reloaded_and_decide_the_same() -> None:
    broker, store = Broker(), InMemoryStateStore()
    w = worker(store, broker, frozen(), max_cached_customers=100)

    async def go() -> None:
        records = as_records(EVENTS)
        for i in range(0, len(records), 32):
            assert await w.handle(records[i : i + 32])
            assert len(w.pipeline.engine.customers) <= 100

    asyncio.run(go())
    assert broker.actions() == expected(EVENTS, frozen())
    assert len(store.customers) == 300


def test_trim_keeps_the_most_recently_used() -> None:
    engine = DecisionEngine(demo_catalog())
    for e in generate(10, seed=1):
        engine.process(e)
    order = list(engine.customers)
    assert len(engine.trim([order[0]], limit=3)) == 7
    assert list(engine.customers) == [*order[8:], order[0]]


def test_windows_of_evicted_customers_still_close() -> None:
    """With room for 100 customers, most are evicted before their windows end; the due index
    brings them back to close them, so every Outcome the pure engine gives is sent."""
    from datetime import datetime, timedelta

    from app.actions import encode_outcome
    from schemas.types import format_event_time

    events = list(generate(300, seed=5, arrival_span=timedelta(days=6)))
    last = max(datetime.fromisoformat(e["ts"]) for e in events)
    tick = {
        "event_id": "tick",
        "type": "page_view",
        "page": "home",
        "customer_id": "tick",
        "ts": format_event_time(last + timedelta(seconds=1)),
    }
    events.append(tick)  # one more batch after the rest: the sweep runs before it
    reference = DecisionEngine(demo_catalog(), frozen())
    for e in events:
        reference.process(e)
    expected_outcomes = {o.action_id: encode_outcome(o) for o in reference.take_outcomes()}

    def run(assign: bool) -> dict[str, bytes]:
        store, broker = InMemoryStateStore(), Broker()
        w = worker(store, broker, frozen(), max_cached_customers=100)
        if assign:
            w.assign([0])
        records = as_records(events)
        for i in range(0, len(records) - 1, 60):
            assert asyncio.run(w.handle(records[i : min(i + 60, len(records) - 1)]))
        assert asyncio.run(w.handle(records[-1:]))
        assert len(w.pipeline.engine.customers) <= 100 + 60
        return {codec.loads(v)["action_id"]: v for t, _, v in broker.sent if t == "outcomes" and v}

    assert len(expected_outcomes) > 500
    assert run(assign=True) == expected_outcomes
    unswept = run(assign=False)  # the control: a worker that owns no partition never sweeps
    assert len(unswept) < 0.8 * len(expected_outcomes)


def test_records_that_waited_past_the_freshness_limit_are_stale() -> None:
    import time

    events = list(generate(60, seed=3))

    def onsite_actions(age_s: float) -> tuple[int, int]:
        store, broker = InMemoryStateStore(), Broker()
        w = worker(store, broker)
        stamp = int((time.time() - age_s) * 1000)
        records = [
            Record(r.topic, r.partition, r.offset, r.key, r.value, stamp)
            for r in as_records(events)
        ]
        assert asyncio.run(w.handle(records))
        actions = [codec.loads(v) for v in broker.actions()]
        return sum(a["channel"].startswith("onsite") for a in actions), len(actions)

    fresh, total = onsite_actions(1.0)
    stale, stale_total = onsite_actions(3600.0)
    assert fresh > 10 and total > 50
    assert stale == 0 and stale_total > 20  # decided, but nothing onsite


def test_unknown_skus_are_counted_and_logged_at_powers_of_ten(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from app.io import metrics

    before = metrics.UNKNOWN_SKUS._value.get()
    events = [{**e, "sku": f"GONE-{i}"} if e.get("sku") else e for i, e in enumerate(EVENTS[:400])]
    unknown = sum(
        1
        for e in events
        if e["type"] in ("page_view", "add_to_cart", "remove_from_cart") and e.get("sku")
    )
    w = worker(InMemoryStateStore(), Broker())
    with caplog.at_level("WARNING", logger="agents.worker"):
        run_batches(w, as_records(events), 50)
    assert unknown >= 100
    assert w.unknown_skus >= unknown
    assert metrics.UNKNOWN_SKUS._value.get() - before == w.unknown_skus
    logged = [r.getMessage() for r in caplog.records if "not in the catalog" in r.getMessage()]
    assert 1 <= len(logged) <= len(str(w.unknown_skus))  # past 1, 10, 100...: never a flood
    assert "GONE-" in logged[0]


class FlakyBroker(Broker):
    """Refuses the send at `fail_at`, `times` times, then accepts everything."""

    def __init__(self, fail_at: int, times: int) -> None:
        super().__init__(fail_at)
        self.times = times

    async def send(
        self, topic: str, key: bytes | None, value: bytes | None, headers: Headers | None
    ) -> Awaitable[Any]:
        if len(self.sent) == self.fail_at:
            self.times -= 1
            if self.times == 0:
                self.fail_at = None  # from now on the broker takes everything
            raise ConnectionError("broker went away")
        return await super().send(topic, key, value, headers)


def test_a_failed_send_is_retried_from_the_checkpoint_without_losing_an_action() -> None:
    """The batch half sent when the broker refused a record is handled again from the
    checkpoint: every action comes out, the repeats are identical, and the batches after it
    decide as if nothing had happened (nothing half-applied stayed in memory)."""
    store, records = InMemoryStateStore(), as_records(EVENTS)
    broker = FlakyBroker(fail_at=150, times=2)
    w = worker(store, broker, frozen())

    async def go() -> None:
        for i in range(0, len(records), 64):
            assert await w.handle_until_done(records[i : i + 64], first_wait_s=0.001)

    asyncio.run(go())
    delivered, want = broker.actions(), expected(EVENTS, frozen())
    assert sorted(set(delivered)) == sorted(want)
    assert len(delivered) > len(want)  # the failed batch's first sends went out again
    assert [a for a in dict.fromkeys(delivered)] == want  # first copies in the engine's order


def test_a_batch_that_keeps_failing_gives_up_after_the_retry_time() -> None:
    from agents.worker import BatchFailed

    store, records = InMemoryStateStore(), as_records(EVENTS)
    w = worker(store, Broker(fail_at=0), frozen(), batch_retry_s=0.05)
    with pytest.raises(BatchFailed, match="TACT_BATCH_RETRY_S"):
        asyncio.run(w.handle_until_done(records[:64], first_wait_s=0.01))
    assert store.commits == 0


def test_a_failed_batch_leaves_no_learning_behind_before_the_first_checkpoint() -> None:
    """Learning on, nothing checkpointed yet: a batch that fails half-sent must not leave
    what it taught the models in memory, or its retry would teach it twice."""
    records = as_records(EVENTS)

    def run(broker: Broker) -> DecisionWorker:
        w = worker(InMemoryStateStore(), broker)

        async def go() -> None:
            for i in range(0, len(records), 64):
                assert await w.handle_until_done(records[i : i + 64], first_wait_s=0.001)

        asyncio.run(go())
        return w

    clean = run(Broker()).pipeline.engine.models
    retried = run(FlakyBroker(fail_at=5, times=1)).pipeline.engine.models  # in batch 1
    assert retried.to_bytes() == clean.to_bytes()


class FlakyDueStore(InMemoryStateStore):
    """Fails every other sweep of the due index (as Redis might), after a state load."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    async def load_due(self, partition: int, until: float, limit: int) -> list[str]:
        self.calls += 1
        if self.calls % 2 == 0:
            raise ConnectionError("redis went away")
        return await super().load_due(partition, until, limit)


def test_outcomes_closed_before_a_failure_are_not_sent_twice() -> None:
    from datetime import timedelta

    events = list(generate(300, seed=5, arrival_span=timedelta(days=6)))
    records = as_records(events)
    store, broker = FlakyDueStore(), Broker()
    w = worker(store, broker, frozen(), max_cached_customers=100)
    w.assign([0])

    async def go() -> None:
        for i in range(0, len(records), 60):
            assert await w.handle_until_done(records[i : i + 60], first_wait_s=0.001)

    asyncio.run(go())
    assert store.calls > 10
    outcomes = [v for t, _, v in broker.sent if t == "outcomes" and v]
    assert len(outcomes) > 300
    assert len(outcomes) == len(set(outcomes))
