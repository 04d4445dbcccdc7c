"""Garbage becomes dead letters with reasons; the valid records around it still act."""

from __future__ import annotations

from typing import Any

from app import codec
from app.actions import action_id
from app.partitioning import partition_of
from app.settings import Settings
from tests.integration.kafka_helpers import TopicReader, producer
from tests.samples import event

CUSTOMER = "dlq-customer"


def cart_add(day: int) -> dict[str, Any]:
    return event(
        "add_to_cart",
        event_id=f"valid-{day}",
        customer_id=CUSTOMER,
        ts=f"2026-11-{day:02d}T10:00:00Z",
    )


def test_garbage_goes_to_dead_letters_and_the_stream_goes_on(
    stack: Settings, start_worker: Any
) -> None:
    wrong_type = {**event("search", customer_id=CUSTOMER), "type": "teleport"}
    huge = codec.dumps({**cart_add(30), "padding": "x" * (1536 * 1024)})
    # (topic, value, expected reason); valid events between every piece of garbage.
    garbage: list[tuple[str, bytes | None, str]] = [
        (stack.topic_clickstream, b"{not json", "not_json"),
        (stack.topic_clickstream, b"[1, 2, 3]", "not_object"),
        (stack.topic_clickstream, huge, "too_large"),
        (stack.topic_clickstream, codec.dumps(wrong_type), "unknown_type"),
        (
            stack.topic_clickstream,
            codec.dumps(event("add_to_cart", customer_id=CUSTOMER, qty="two")),
            "schema",
        ),
        (
            stack.topic_clickstream,
            codec.dumps(event("order_placed", customer_id=CUSTOMER)),
            "wrong_topic",
        ),
        (stack.topic_clickstream, None, "not_json"),
        (stack.topic_clickstream, b"\xff\xfe\xfa", "not_json"),
        (stack.topic_orders, codec.dumps(event("page_view", customer_id=CUSTOMER)), "wrong_topic"),
        (
            stack.topic_clickstream,
            codec.dumps(
                event(
                    "add_to_cart",
                    event_id="from-2099",
                    customer_id=CUSTOMER,
                    ts="2099-01-01T00:00:00Z",
                )
            ),
            "future_timestamp",
        ),
    ]
    prod = producer(stack.kafka_bootstrap)
    sent: list[tuple[Any, bytes | None, str]] = []
    valid_ids = []
    for day, (topic, value, reason) in enumerate(garbage, start=1):
        valid = cart_add(day)
        valid_ids.append(valid["event_id"])
        prod.send(stack.topic_clickstream, key=CUSTOMER.encode(), value=codec.dumps(valid))
        meta = prod.send(topic, key=CUSTOMER.encode(), value=value).get(timeout=30)
        sent.append((meta, value, reason))
    # A valid event produced to a partition its customer does not belong to.
    stray = {**cart_add(27), "event_id": "stray"}
    home = partition_of(CUSTOMER, stack.topic_partitions)
    value = codec.dumps(stray)
    meta = prod.send(
        stack.topic_clickstream,
        key=CUSTOMER.encode(),
        value=value,
        partition=(home + 1) % stack.topic_partitions,
    ).get(timeout=30)
    sent.append((meta, value, "misrouted"))
    last = cart_add(28)
    valid_ids.append(last["event_id"])
    prod.send(stack.topic_clickstream, key=CUSTOMER.encode(), value=codec.dumps(last))
    prod.flush()

    worker = start_worker(stack)
    actions = TopicReader(stack.kafka_bootstrap, stack.topic_actions)
    dead = TopicReader(stack.kafka_bootstrap, stack.topic_dead_letters)
    wanted = {action_id(CUSTOMER, e, "decision") for e in valid_ids}
    actions.wait_for(
        lambda r: wanted <= {codec.loads(x.value)["action_id"] for x in r},
        what="decisions on the valid events",
    )
    dead.wait_for(lambda r: len(r) >= len(sent), what="dead letters")

    # Every valid event still yields its decision, in order.
    decisions = [codec.loads(r.value) for r in actions.settle()]
    decisions = [
        a
        for a in decisions
        if a["action_id"] == action_id(CUSTOMER, a["source_event_id"], "decision")
    ]
    assert [a["source_event_id"] for a in decisions] == valid_ids

    letters = dead.settle()
    assert len(letters) == len(sent)
    by_origin = {}
    for r in letters:
        h = {k: v.decode() for k, v in r.headers}
        by_origin[
            (h["tact.dlq.topic"], int(h["tact.dlq.partition"]), int(h["tact.dlq.offset"]))
        ] = (r, h)
    for meta, value, reason in sent:
        record, headers = by_origin[(meta.topic, meta.partition, meta.offset)]
        assert headers["tact.dlq.reason"] == reason
        assert headers["tact.dlq.detail"]
        assert record.value == value  # the original bytes, untouched
        assert record.key == CUSTOMER.encode()

    metrics = worker.wait_metrics()
    for reason in {r for _, _, r in sent}:
        assert metrics[f'tact_dead_letters_total{{reason="{reason}"}}'] == sum(
            r == reason for _, _, r in sent
        )
