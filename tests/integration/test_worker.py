"""`tact worker` against the real broker and Redis: events in, the engine's actions out."""

from __future__ import annotations

import signal
import time
from collections import defaultdict
from typing import Any

import pytest

from app import codec
from app.actions import action_id, encode
from app.engine import DecisionEngine
from app.io import clients
from app.io.kafka_admin import ensure_topics
from app.io.redis_store import RedisKeys
from app.partitioning import partition_of
from app.policy import load_policy
from app.sample import demo_catalog, generate
from app.settings import Settings
from schemas import FAMILY_OF_TYPE, Action
from tests.integration.kafka_helpers import TopicReader, produce_events, producer, wait


def topics_of(s: Settings) -> dict[str, str]:
    return {"clickstream": s.topic_clickstream, "orders": s.topic_orders}


def clickstream_only(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One topic: a customer's events then reach the worker in exactly the order sent."""
    return [e for e in events if FAMILY_OF_TYPE[e["type"]] == "clickstream"]


def expected_actions(
    events: list[dict[str, Any]], policy_path: Any = None
) -> dict[str, list[bytes]]:
    """What the pure engine decides, per customer, in order."""
    engine = DecisionEngine(demo_catalog(), load_policy(policy_path))
    out: dict[str, list[bytes]] = defaultdict(list)
    for e in events:
        for action in engine.process(e):
            out[action.customer_id].append(encode(action))
    return dict(out)


def per_customer(records: list[Any]) -> dict[str, list[bytes]]:
    out: dict[str, list[bytes]] = defaultdict(list)
    for r in records:
        out[r.key.decode()].append(r.value)
    return dict(out)


def test_worker_decides_exactly_as_the_engine(stack: Settings, start_worker: Any) -> None:
    """One partition, one topic: the worker sees the events in the order the engine does, so
    even with the models learning online its actions are the engine's, byte for byte."""
    stack = stack.model_copy(
        update={
            "topic_partitions": 1,
            "topic_clickstream": stack.topic_clickstream + "-single",
            "topic_orders": stack.topic_orders + "-single",
        }
    )
    ensure_topics(stack)
    events = clickstream_only(list(generate(80, seed=21)))
    expected = expected_actions(events)
    total = sum(len(v) for v in expected.values())
    assert total > 40

    prod = producer(stack.kafka_bootstrap)
    produce_events(prod, topics_of(stack), events[: len(events) // 2])
    worker = start_worker(stack)
    produce_events(prod, topics_of(stack), events[len(events) // 2 :])

    actions = TopicReader(stack.kafka_bootstrap, stack.topic_actions)
    actions.wait_for(lambda r: len(r) >= total, what=f"{total} actions")
    assert per_customer(actions.settle()) == expected  # byte for byte, in order, keyed

    metrics = worker.wait_metrics()
    assert metrics['tact_events_total{type="add_to_cart"}'] == sum(
        e["type"] == "add_to_cart" for e in events
    )
    assert sum(v for k, v in metrics.items() if k.startswith("tact_actions_total")) == total
    assert TopicReader(stack.kafka_bootstrap, stack.topic_dead_letters).settle(1.0) == []


def test_every_moment_on_both_topics_gets_its_decision(stack: Settings, start_worker: Any) -> None:
    """Clickstream and orders over several partitions: each decision moment yields its
    decision (upsell or protect) with its deterministic id, as a valid Action."""
    events = list(generate(120, seed=8))
    engine = DecisionEngine(demo_catalog())
    decided: set[str] = set()
    for e in events:
        decided |= {
            a.action_id
            for a in engine.process(e)
            if a.action_id == action_id(e["customer_id"], e["event_id"], "decision")
        }
    assert len(decided) > 100

    start_worker(stack)
    produce_events(producer(stack.kafka_bootstrap), topics_of(stack), events)
    actions = TopicReader(stack.kafka_bootstrap, stack.topic_actions)
    actions.wait_for(
        lambda r: {codec.loads(x.value)["action_id"] for x in r} >= decided,
        what=f"{len(decided)} decisions",
    )
    for record in actions.settle():
        action = Action.model_validate_json(record.value)
        assert record.key.decode() == action.customer_id
        # sent a batch at a time, to the partition Kafka's default partitioner gives the key
        assert record.partition == partition_of(action.customer_id, stack.topic_partitions)
        assert {k for k, _ in record.headers} == {"tact.worker", "tact.epoch"}


def test_a_lagging_worker_fires_no_stale_offers(stack: Settings, start_worker: Any) -> None:
    """Records that waited in Kafka past the freshness limit (their timestamps an hour old):
    decided as on time, but no onsite offer can be delivered (sent already expired, reason
    stale), and counted as stale."""
    import time

    events = list(generate(60, seed=17))
    prod = producer(stack.kafka_bootstrap)
    an_hour_ago = int((time.time() - 3600) * 1000)
    for e in events:
        prod.send(
            topics_of(stack)[FAMILY_OF_TYPE[e["type"]]],
            key=e["customer_id"].encode(),
            value=codec.dumps(e),
            timestamp_ms=an_hour_ago,
        )
    prod.flush()
    worker = start_worker(stack)
    actions = TopicReader(stack.kafka_bootstrap, stack.topic_actions)
    actions.wait_for(lambda r: len(r) > 30, what="actions")
    records = actions.settle()
    decided = [codec.loads(r.value) for r in records]
    onsite = [a for a in decided if a["channel"].startswith("onsite") and not a["holdout"]]
    assert onsite and all(
        a["expires_at"] == a["not_before"] == a["ts"] and "stale" in a["reasons"] for a in onsite
    )
    assert worker.wait_metrics()["tact_stale_events_total"] == len(events)
    import urllib.error
    import urllib.request

    # and the health verdict says so (503), whatever else it says first
    url = f"http://127.0.0.1:{stack.metrics_port}/health"
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(url, timeout=5)
    assert refused.value.code == 503
    assert "events stale: 100% of the latest events" in refused.value.read().decode()


def test_status_page_and_lag_metrics(stack: Settings, start_worker: Any) -> None:
    """The worker reads its own group's lag (as `tact lag` does) into gauges and a status
    page, and times each decision."""
    import time
    import urllib.request

    stack = stack.model_copy(update={"lag_interval_s": 1.0})
    events = list(generate(40, seed=5))
    worker = start_worker(stack)
    produce_events(producer(stack.kafka_bootstrap), topics_of(stack), events)
    TopicReader(stack.kafka_bootstrap, stack.topic_actions).wait_for(
        lambda r: len(r) > 20, what="actions"
    )
    deadline = time.monotonic() + 30
    while True:
        samples = worker.wait_metrics()
        lag = {k: v for k, v in samples.items() if k.startswith("tact_consumer_lag_records{")}
        timed = samples.get("tact_decision_seconds_count", 0)
        # (the gauges can read 0 before the last batch's timings are counted)
        if (
            len(lag) == 2 * stack.topic_partitions
            and sum(lag.values()) == 0
            and timed >= len(events)
        ):
            break  # every input partition seen, caught up, and every event timed
        assert time.monotonic() < deadline, f"lag gauges {lag}, {timed} of {len(events)} timed"
        time.sleep(0.5)
    assert any(stack.topic_clickstream in k for k in lag)
    assert samples["tact_decision_seconds_count"] == len(events)
    url = f"http://127.0.0.1:{stack.metrics_port}/"
    with urllib.request.urlopen(url, timeout=5) as response:
        page = response.read().decode()
    assert "tact worker" in page and stack.topic_clickstream in page and "events/s" in page
    for fact in (f"group {stack.app_id};", "policy default-", "products)", "models m", "up 0h"):
        assert fact in page
    assert "health: <b>healthy</b>" in page and "None" not in page
    with urllib.request.urlopen(url + "health", timeout=5) as response:
        assert (response.status, response.read()) == (200, b"healthy\n")


def test_a_worker_asked_to_stop_under_load_stops_within_its_deadline(
    stack: Settings, start_worker: Any
) -> None:
    """SIGTERM while a backlog is being worked through: the process is gone within
    TACT_STOP_TIMEOUT_S (cleanly, or by the deadline if a part of Faust hung, as one did in a
    benchmark and lived on for an hour), and it says it is stopping. Redis holds every write
    for 2 s from just before the SIGTERM, so it comes with a batch in hand."""
    settings = stack.model_copy(update={"stop_timeout_s": 10.0})
    events = list(generate(2000, seed=4))  # (about 28,000: several seconds of work)
    produce_events(producer(settings.kafka_bootstrap), topics_of(settings), events)
    worker = start_worker(settings)
    wait(
        lambda: any(k.startswith("tact_events_total") for k in worker.wait_metrics()),
        60,
        "the worker to start on the backlog",
    )
    redis_client = clients.redis_client(settings)

    def saved_offsets() -> dict[str, int]:
        saved: dict[str, int] = {}
        for partition in range(settings.topic_partitions):
            raw = redis_client.hgetall(RedisKeys(settings.redis_prefix).offsets(partition))
            saved.update({k.decode(): int(v) for k, v in raw.items() if not k.startswith(b"@")})
        return saved

    redis_client.execute_command("CLIENT", "PAUSE", 2000, "WRITE")
    time.sleep(0.2)  # (the batch in hand waits for its checkpoint)
    before = saved_offsets()
    assert sum(before.values()) < len(events) / 2  # (still working through the backlog)
    asked = time.monotonic()
    worker.proc.send_signal(signal.SIGTERM)
    code = worker.proc.wait(timeout=settings.stop_timeout_s + 10)
    assert time.monotonic() - asked <= settings.stop_timeout_s + 3
    assert code in (0, 1), code  # 1: the deadline ended it (its log says what hung)
    log = worker.log()
    assert "stopping (SIGTERM)" in log
    saved = saved_offsets()
    assert sum(saved.values()) > sum(before.values())  # the batch in hand was finished
    if code == 1:  # (a part of Faust hung after that: its last commit may not have come)
        assert "still running" in log, log[-3000:]
        return
    # The batch in hand was finished and acknowledged before Faust's last commit, with the
    # producer still there: the group's committed offsets are the checkpoint's, now past
    # that batch (a restart sends none of its Actions again), and no error was logged.
    errors = [
        line
        for line in log.splitlines()
        if line.startswith("{") and codec.loads(line).get("level") in ("error", "critical")
    ]
    assert not errors and "Traceback" not in log, errors or log[-3000:]
    admin = clients.admin(settings)
    try:
        group = admin.list_group_offsets({settings.app_id: None})[settings.app_id]
    finally:
        admin.close()
    committed = {f"{tp.topic}:{tp.partition}": meta.offset for tp, meta in group.items()}
    names = set(topics_of(settings).values())
    inputs = {k: v for k, v in committed.items() if k.rsplit(":", 1)[0] in names}
    assert saved and inputs == saved
