"""`tact worker` against the real broker and Redis: events in, the engine's actions out."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from app import codec
from app.engine import DecisionEngine
from app.sample import generate
from app.settings import Settings
from schemas import FAMILY_OF_TYPE
from tests.integration.kafka_helpers import TopicReader, produce_events, producer


def topics_of(s: Settings) -> dict[str, str]:
    return {"clickstream": s.topic_clickstream, "orders": s.topic_orders}


def expected_actions(events: list[dict[str, Any]]) -> dict[str, list[bytes]]:
    """What the pure engine decides, per customer and source topic, in order."""
    engine = DecisionEngine()
    out: dict[str, list[bytes]] = defaultdict(list)
    for e in events:
        for action in engine.process(e):
            key = f"{action.customer_id}/{FAMILY_OF_TYPE[e['type']]}"
            out[key].append(codec.dumps(action.model_dump(mode="json")))
    return dict(out)


def per_customer(records: list[Any], source_family: dict[str, str]) -> dict[str, list[bytes]]:
    """Actions read back, grouped like expected_actions (Kafka orders a customer's events
    within each topic; across clickstream and orders the worker sees arrival order)."""
    out: dict[str, list[bytes]] = defaultdict(list)
    for r in records:
        family = source_family[codec.loads(r.value)["source_event_id"]]
        out[f"{r.key.decode()}/{family}"].append(r.value)
    return dict(out)


def families_by_event(events: list[dict[str, Any]]) -> dict[str, str]:
    return {e["event_id"]: FAMILY_OF_TYPE[e["type"]] for e in events}


def test_worker_turns_events_into_the_engines_actions(stack: Settings, start_worker: Any) -> None:
    events = list(generate(60, seed=21))
    expected = expected_actions(events)
    total = sum(len(v) for v in expected.values())
    assert total > 30

    prod = producer(stack.kafka_bootstrap)
    produce_events(prod, topics_of(stack), events[: len(events) // 2])
    worker = start_worker(stack)
    produce_events(prod, topics_of(stack), events[len(events) // 2 :])

    actions = TopicReader(stack.kafka_bootstrap, stack.topic_actions)
    actions.wait_for(lambda r: len(r) >= total, what=f"{total} actions")
    got = per_customer(actions.settle(), families_by_event(events))
    assert got == expected  # byte for byte, in order, keyed by customer id

    metrics = worker.wait_metrics()
    assert metrics['tact_events_total{type="add_to_cart"}'] == sum(
        e["type"] == "add_to_cart" for e in events
    )
    assert sum(v for k, v in metrics.items() if k.startswith("tact_actions_total")) == total
    dead = TopicReader(stack.kafka_bootstrap, stack.topic_dead_letters)
    assert dead.settle(1.0) == []
