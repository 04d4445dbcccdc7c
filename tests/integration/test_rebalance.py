"""A second worker joining mid-stream takes over partitions from the first (a live revoke):
every action still arrives, and any action sent twice is the same action."""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from typing import Any

from app import codec
from app.sample import generate
from app.settings import Settings
from tests.integration.conftest import free_port
from tests.integration.kafka_helpers import TopicReader, produce_events, producer
from tests.integration.test_crash_recovery import burst_customers, interleave
from tests.integration.test_worker import clickstream_only, expected_actions, topics_of


def test_scale_out_mid_stream(stack: Settings, start_worker: Any, frozen_policy: Any) -> None:
    stack = stack.model_copy(update={"batch_max": 40, "policy": frozen_policy})
    events = clickstream_only(interleave(list(generate(200, seed=17)), burst_customers(100)))
    want = {a for acts in expected_actions(events, frozen_policy).values() for a in acts}
    first_part, middle = len(events) * 4 // 10, len(events) * 7 // 10
    prod = producer(stack.kafka_bootstrap)
    topics = topics_of(stack)

    first = start_worker(stack)
    produce_events(prod, topics, events[:first_part])
    actions = TopicReader(stack.kafka_bootstrap, stack.topic_actions)
    actions.wait_for(lambda r: len(r) >= len(want) // 4, what="a quarter of the actions")

    def produce_slowly() -> None:  # keeps the first worker busy while the group rebalances
        for i in range(first_part, middle, 20):
            produce_events(prod, topics, events[i : min(i + 20, middle)])
            time.sleep(0.05)

    feeder = threading.Thread(target=produce_slowly)
    feeder.start()
    try:
        second = start_worker(stack.model_copy(update={"metrics_port": free_port()}))
        deadline = time.monotonic() + 60
        while "assigned" not in second.log():
            assert second.proc.poll() is None, f"the second worker exited:\n{second.log()}"
            assert time.monotonic() < deadline, "the second worker never got partitions"
            time.sleep(0.2)
    finally:
        feeder.join()
    produce_events(prod, topics, events[middle:])
    actions.wait_for(lambda r: {x.value for x in r} >= want, timeout=120, what="every action")

    copies: dict[str, set[bytes]] = defaultdict(set)
    for r in actions.settle():
        copies[codec.loads(r.value)["action_id"]].add(r.value)
    assert {v for vs in copies.values() for v in vs} == want  # nothing lost, nothing changed
    assert all(len(v) == 1 for v in copies.values())
    # Both workers did part of the work after the rebalance.
    assert first.proc.poll() is None and second.proc.poll() is None
    for worker in (first, second):
        assert worker.wait_metrics().get('tact_events_total{type="add_to_cart"}', 0) > 0
