"""Outcomes and learning in `tact worker`, against the real broker and Redis: every closed
window's Outcome reaches the outcomes topic as the engine makes it; learned models are
checkpointed and a restarted worker carries on from them; `tact report` reads the topics."""

from __future__ import annotations

import signal
import subprocess
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis

from app import codec
from app.actions import encode_outcome
from app.catalog import write_jsonl
from app.engine import DecisionEngine
from app.io.kafka_admin import ensure_topics
from app.io.redis_store import models_key
from app.partitioning import partition_of
from app.policy import load_policy
from app.sample import DEMO_CATALOG, demo_catalog, generate
from app.settings import Settings
from schemas import FAMILY_OF_TYPE, Outcome
from schemas.types import format_event_time
from tests.integration.conftest import TACT, settings_env
from tests.integration.kafka_helpers import TopicReader, produce_events, producer
from tests.integration.test_worker import topics_of


def by_family(events: list[dict[str, Any]], family: str) -> list[dict[str, Any]]:
    return [e for e in events if FAMILY_OF_TYPE[e["type"]] == family]


def with_a_cancellation(events: list[dict[str, Any]], policy: Any) -> list[dict[str, Any]]:
    """`events` and an order that cancels a pending Action (its SKU bought after the decision,
    before it could be delivered), so that a cancelled Outcome is among those made whatever
    the engine's choices on the data (which may have none). The clickstream is read first
    (as the test sends it): the Action must still be pending after the last click."""
    engine = DecisionEngine(demo_catalog(), load_policy(policy))
    clicks = by_family(events, "clickstream")
    last = max(datetime.fromisoformat(e["ts"]) for e in clicks)
    for event in clicks:
        for a in engine.process(event):
            if a.offer_sku and a.play != "protect" and a.not_before > last:
                price = demo_catalog().products[a.offer_sku].price
                order = {
                    "event_id": f"{a.customer_id}-cancelling-order",
                    "type": "order_placed",
                    "customer_id": a.customer_id,
                    "ts": format_event_time(a.ts + timedelta(minutes=5)),
                    "order_id": f"{a.customer_id}-cancelling-order",
                    "items": [{"sku": a.offer_sku, "qty": 1, "price": price}],
                    "total": price,
                }
                return sorted([*events, order], key=lambda e: datetime.fromisoformat(e["ts"]))
    raise AssertionError("no Action waits to be delivered: nothing to cancel")


def model_updates(version: str) -> int:
    return int(version.rsplit(".", 1)[1])


@pytest.mark.parametrize("cached", [200_000, 100])
def test_outcomes_reach_their_topic_as_the_engine_makes_them(
    stack: Settings, start_worker: Any, frozen_policy: Any, cached: int
) -> None:
    # One partition per topic, clickstream first and orders once it is consumed: the worker
    # sees exactly the sequence the reference engine does. Learning off: nothing global moves.
    # With room for only 100 customers, most are evicted before their windows end: the due
    # index in Redis must bring them back to close them.
    stack = stack.model_copy(
        update={
            "topic_partitions": 1,
            "topic_clickstream": stack.topic_clickstream + "-one",
            "topic_orders": stack.topic_orders + "-one",
            "policy": frozen_policy,
            "max_cached_customers": cached,
        }
    )
    ensure_topics(stack)
    events = list(generate(150, seed=31, arrival_span=timedelta(days=6)))
    events = with_a_cancellation(events, frozen_policy)
    clicks, orders = by_family(events, "clickstream"), by_family(events, "orders")
    last = max(datetime.fromisoformat(e["ts"]) for e in events)
    tick = {  # a last event after the rest: the worker sweeps due windows before it
        "event_id": "tick",
        "type": "page_view",
        "page": "home",
        "customer_id": "tick",
        "ts": format_event_time(last + timedelta(seconds=1)),
    }
    engine = DecisionEngine(demo_catalog(), load_policy(frozen_policy))
    actions_n = 0
    for e in clicks:
        actions_n += len(engine.process(e))
    after_clicks = actions_n
    for e in orders:
        actions_n += len(engine.process(e))
    actions_n += len(engine.process(tick))
    expected = {o.action_id: encode_outcome(o) for o in engine.take_outcomes()}
    assert len(expected) > 200 and {codec.loads(v)["status"] for v in expected.values()} >= {
        "closed",
        "cancelled",
    }

    worker = start_worker(stack)
    prod = producer(stack.kafka_bootstrap)
    actions = TopicReader(stack.kafka_bootstrap, stack.topic_actions)
    produce_events(prod, topics_of(stack), clicks)
    actions.wait_for(lambda r: len(r) >= after_clicks, what="the clickstream's actions")
    produce_events(prod, topics_of(stack), orders)
    actions.wait_for(lambda r: len(r) >= actions_n - 1, what="the orders' actions")
    produce_events(prod, topics_of(stack), [tick])
    actions.wait_for(lambda r: len(r) >= actions_n, what="every action")
    outcomes = TopicReader(stack.kafka_bootstrap, stack.topic_outcomes)
    outcomes.wait_for(lambda r: len(r) >= len(expected), what=f"{len(expected)} outcomes")
    got = {codec.loads(r.value)["action_id"]: r.value for r in outcomes.settle()}
    assert got == expected  # every one, byte for byte, none twice
    for record in outcomes.records[:50]:
        assert Outcome.model_validate_json(record.value).customer_id == record.key.decode()
    metrics = worker.wait_metrics()
    assert sum(v for k, v in metrics.items() if k.startswith("tact_outcomes_total")) == len(
        expected
    )

    # The report reads the same data back from the topics, by time range, with no group.
    env = settings_env(stack)
    report = subprocess.run(
        [str(TACT), "report", "--from-topics", "--out", str(worker.log_path.parent / "report")],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert report.returncode == 0, report.stderr
    figures = codec.loads((worker.log_path.parent / "report" / "report.json").read_bytes())
    assert figures["lines"]["actions"] == actions_n
    assert figures["lines"]["outcomes"] == len(expected)
    assert figures["lines"]["events"] == len(events) + 1  # and the tick
    assert "incremental profit per customer" in report.stdout
    # A backtest of the same range with the worker's own policy, evaluated on what the worker
    # logged: it reproduces the log, so every weight is 1.
    catalog = worker.log_path.parent / "catalog.jsonl"
    write_jsonl(DEMO_CATALOG, catalog)
    backtest = subprocess.run(
        [str(TACT), "replay", "--from-topics", "--catalog", str(catalog),
         "--policy", str(frozen_policy),
         "--out", str(worker.log_path.parent / "backtest.jsonl"), "--evaluate"],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert backtest.returncode == 0, backtest.stderr
    evaluation = codec.loads((worker.log_path.parent / "backtest.evaluation.json").read_bytes())
    assert evaluation["n"] > 100 and evaluation["support"] == 1.0
    assert evaluation["ess"] == pytest.approx(evaluation["n"])
    assert evaluation["ips"]["value"] == pytest.approx(evaluation["logged"]["value"])
    empty = subprocess.run(
        [
            str(TACT),
            "report",
            "--from-topics",
            "--since",
            "2031-01-01",
            "--out",
            str(worker.log_path.parent / "r2"),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert empty.returncode == 1 and "no Actions in the period" in empty.stderr


def test_a_backlog_of_both_topics_is_folded_in_event_time(
    stack: Settings, start_worker: Any, frozen_policy: Any
) -> None:
    """Both topics full before the worker starts, the orders produced first: a fetch of them
    spans days more of event time than one of the clicks. The worker folds each partition's
    two topics in event time (agents/align.py), so its Outcomes are the engine's on the whole
    stream in time order, byte for byte. (Folded as fetched, orders counted before the clicks
    whose Actions they converted: most conversions were missed.)"""
    # Batches of 20: a topic-partition with 80 records waiting is paused (and resumed).
    stack = stack.model_copy(update={"policy": frozen_policy, "batch_max": 20})
    events = list(generate(150, seed=37, arrival_span=timedelta(days=6)))
    last = max(datetime.fromisoformat(e["ts"]) for e in events)
    ticks = [  # a last event on every partition, after the rest: the watermark passes `last`
        {
            "event_id": f"tick-{cid}",
            "type": "page_view",
            "page": "home",
            "customer_id": cid,
            "ts": format_event_time(last + timedelta(seconds=1)),
        }
        for cid in {partition_of(f"tick-{i}", 3): f"tick-{i}" for i in range(30)}.values()
    ]
    assert len(ticks) == stack.topic_partitions == 3
    rank = {"clickstream": 0, "orders": 1}  # (a tie: the click first, as the worker does)
    timed = sorted(
        events, key=lambda e: (datetime.fromisoformat(e["ts"]), rank[FAMILY_OF_TYPE[e["type"]]])
    )
    engine = DecisionEngine(demo_catalog(), load_policy(frozen_policy))
    for e in [*timed, *ticks]:
        engine.process(e)
    expected = {o.action_id: encode_outcome(o) for o in engine.take_outcomes()}
    converted = sum(codec.loads(v)["converted"] for v in expected.values())
    assert len(expected) > 200 and converted >= 10

    prod = producer(stack.kafka_bootstrap)
    produce_events(prod, topics_of(stack), by_family(events, "orders"))
    produce_events(prod, topics_of(stack), [*by_family(events, "clickstream"), *ticks])
    start_worker(stack)
    outcomes = TopicReader(stack.kafka_bootstrap, stack.topic_outcomes)
    outcomes.wait_for(lambda r: len(r) >= len(expected), what=f"{len(expected)} outcomes")
    got = {codec.loads(r.value)["action_id"]: r.value for r in outcomes.settle()}
    assert sum(codec.loads(v)["converted"] for v in got.values()) == converted
    assert got == expected


def test_learned_models_survive_a_worker_restart(stack: Settings, start_worker: Any) -> None:
    first_events = list(generate(200, seed=41, arrival_span=timedelta(days=8), prefix="a"))
    prod = producer(stack.kafka_bootstrap)
    first = start_worker(stack)
    produce_events(prod, topics_of(stack), first_events)
    outcomes = TopicReader(stack.kafka_bootstrap, stack.topic_outcomes)
    outcomes.wait_for(lambda r: len(r) > 300, what="outcomes of the first stream")
    actions = TopicReader(stack.kafka_bootstrap, stack.topic_actions)
    before = list(actions.settle(4.0))  # a copy: the reader keeps appending to its list
    learned = max(model_updates(codec.loads(r.value)["model_version"]) for r in before)
    assert learned >= 64, "the models learned nothing (not one mini-batch) before the restart"
    first.kill(signal.SIGKILL)

    store = redis.Redis.from_url(stack.redis_url.get_secret_value())
    core = codec.loads(store.hget(models_key(stack.redis_prefix), "core"))
    saved = core["accept"]["updates"] + core["returns"]["updates"] + core["organic"]["updates"]
    assert saved >= learned  # what the actions said is in the checkpoint
    assert core["accept"]["g2"], "the optimizer's state is checkpointed with the weights"

    start_worker(stack)
    start = max(e["ts"] for e in first_events)
    later = list(generate(60, seed=42, start=datetime(2026, 6, 1, tzinfo=UTC), prefix="b"))
    assert min(e["ts"] for e in later) > start
    produce_events(prod, topics_of(stack), later)

    # The second stream's customers ("b...") were decided only by the restarted worker.
    def second(records: list[Any]) -> list[dict[str, Any]]:
        return [a for a in (codec.loads(r.value) for r in records) if a["customer_id"][0] == "b"]

    after = second(
        actions.wait_for(lambda r: len(second(r)) > 50, what="actions after the restart")
    )
    versions = [model_updates(a["model_version"]) for a in after]
    assert min(versions) >= saved, "the restarted worker started from untrained models"
