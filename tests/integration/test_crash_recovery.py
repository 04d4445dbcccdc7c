"""A worker killed with SIGKILL mid-stream and restarted loses no event: every input still
yields its actions, and a redelivered action is the same action (same id, same bytes)."""

from __future__ import annotations

import signal
import threading
import time
from datetime import timedelta
from typing import Any

from app import codec
from app.sample import DEFAULT_START, generate
from app.settings import Settings
from schemas.types import format_event_time
from tests.integration.kafka_helpers import (
    TopicReader,
    first_copies,
    produce_events,
    producer,
    wait_for_actions,
)
from tests.integration.test_worker import (
    clickstream_only,
    expected_actions,
    per_customer,
    topics_of,
)
from tests.samples import event


def burst_customers(n: int) -> list[dict[str, Any]]:
    """Customers who add more to the cart in a day than the onsite caps allow: their
    actions depend on state, so state applied twice after a crash would show."""
    events = []
    for c in range(n):
        for i in range(9):
            events.append(
                event(
                    "add_to_cart",
                    event_id=f"burst-{c}-{i}",
                    customer_id=f"burst-{c:04d}",
                    sku=f"SKU-{i}",
                    # the sample stream's first morning: the two interleave
                    ts=format_event_time(DEFAULT_START + timedelta(hours=i, minutes=c % 60)),
                )
            )
    return events


def interleave(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(a + b, key=lambda e: e["ts"])


def test_sigkill_mid_stream_loses_nothing(
    stack: Settings, start_worker: Any, frozen_policy: Any
) -> None:
    # Learning off and one topic: each customer's decisions then depend only on its own
    # events in order, so re-decided events must give exactly the actions first sent.
    events = clickstream_only(interleave(list(generate(250, seed=99)), burst_customers(150)))
    expected = expected_actions(events, frozen_policy)
    expected_ids = {codec.loads(a)["action_id"] for acts in expected.values() for a in acts}
    total = len(expected_ids)

    # Small batches: many checkpoints before the kill, so the restart meets both records
    # below the checkpoint (skipped) and records after it (re-decided).
    stack = stack.model_copy(update={"batch_max": 40, "policy": frozen_policy})
    prod = producer(stack.kafka_bootstrap)
    topics = topics_of(stack)

    def produce_slowly() -> None:
        for i in range(0, len(events), 50):
            produce_events(prod, topics, events[i : i + 50])
            time.sleep(0.05)

    feeder = threading.Thread(target=produce_slowly)
    first = start_worker(stack)
    feeder.start()
    actions = TopicReader(stack.kafka_bootstrap, stack.topic_actions)
    actions.wait_for(lambda r: len(r) >= total // 2, what="half of the actions")
    first.kill(signal.SIGKILL)
    seen_before_kill = len(actions.poll())
    assert first.proc.returncode == -signal.SIGKILL
    assert seen_before_kill < total, "the kill came after the stream was done"

    second = start_worker(stack)
    feeder.join()
    records = wait_for_actions(actions, expected_ids, 120, f"all {total} actions after the restart")

    # In order per customer and source topic (first delivery of each action).
    assert per_customer(first_copies(records)) == expected
    # The restart really redelivered work: records below the checkpoint were skipped, or
    # records after it were re-decided (and their actions sent again, unchanged).
    skipped = second.wait_metrics().get("tact_redelivered_skipped_total", 0)
    assert skipped + (len(records) - len(expected_ids)) > 0, "the restart redelivered nothing"
