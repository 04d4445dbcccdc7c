"""A zombie worker: paused (SIGSTOP) past its session timeout, with a batch in hand, while
another worker takes its partitions over, then resumed. That batch is never checkpointed: its
read of customer states or its checkpoint is refused (fenced) or, when the worker hears of
the rebalance before it gets there, the batch is dropped on the way (overtaken). (Before reads
were fenced, the zombie could decide from states the new owner had written, ahead of its own
offsets, and send Actions that differed from the owner's.) Nothing is lost and nothing is applied
twice: every action the stream calls for arrives, every copy identical. (Fencing on its own
is tested in tests/store_contract.py and tests/unit/test_decision_worker.py.)"""

from __future__ import annotations

import re
import signal
from typing import Any

from app import codec
from app.sample import generate
from app.settings import Settings
from tests.integration.conftest import free_port
from tests.integration.kafka_helpers import (
    TopicReader,
    produce_events,
    producer,
    wait,
    wait_for_actions,
)
from tests.integration.test_crash_recovery import burst_customers, interleave
from tests.integration.test_worker import clickstream_only, expected_actions, topics_of


def owned(worker: Any) -> int:
    """How many input partitions the worker's last assignment gave it (-1: none yet)."""
    found = re.findall(r"assigned (\d+) input partitions", worker.log())
    return int(found[-1]) if found else -1


def handled(worker: Any) -> float:
    """Events the worker has counted (every type)."""
    metrics = worker.wait_metrics()
    return sum(v for k, v in metrics.items() if k.startswith("tact_events_total"))


def dropped(worker: Any) -> float:
    """Batches in hand the worker did not checkpoint: refused checkpoints, and batches a
    rebalance overtook while they were handled (not those that came after it: with fencing
    broken, the batch in hand would land and only those would be dropped)."""
    metrics = worker.wait_metrics()
    return metrics.get("tact_fenced_batches_total", 0.0) + metrics.get(
        'tact_rebalanced_batches_total{reason="overtaken"}', 0.0
    )


def test_a_paused_worker_cannot_write_after_its_partitions_moved(
    stack: Settings, start_worker: Any, frozen_policy: Any
) -> None:
    # Learning off: each customer's actions depend only on its own events, so a state applied
    # twice (or a zombie's stale state written over the new owner's) would change them.
    stack = stack.model_copy(update={"batch_max": 40, "policy": frozen_policy})
    events = clickstream_only(interleave(list(generate(250, seed=23)), burst_customers(150)))
    want = {
        codec.loads(a)["action_id"]
        for acts in expected_actions(events, frozen_policy).values()
        for a in acts
    }
    prod = producer(stack.kafka_bootstrap)
    topics = topics_of(stack)
    cycles = 3
    n = 2 * cycles + 2
    parts = [events[i * len(events) // n : (i + 1) * len(events) // n] for i in range(n)]

    zombie = start_worker(stack)
    wait(lambda: owned(zombie) > 0, 60, "the first worker's partitions")
    produce_events(prod, topics, parts[0])
    actions = TopicReader(stack.kafka_bootstrap, stack.topic_actions)
    actions.wait_for(lambda r: len(r) > 0, what="the first actions")
    other = start_worker(stack.model_copy(update={"metrics_port": free_port()}))
    wait(lambda: owned(other) > 0 and 0 < owned(zombie) < 6, 60, "the partitions to be shared")

    for cycle in range(cycles):  # pause it until a batch it had in hand is dropped
        before = handled(zombie)
        produce_events(prod, topics, parts[1 + 2 * cycle])
        # it is busy with them: paused once its first batch of them is counted, with the
        # rest of its share still to do (a fixed sleep let it finish first on a busy machine)
        wait(lambda b=before: handled(zombie) > b, 30, "the first worker to start on them", 0.005)
        dropped_before = dropped(zombie)
        zombie.proc.send_signal(signal.SIGSTOP)
        try:
            wait(lambda: owned(other) == 6, 60, "the other worker to take every partition")
            # Records it will fetch from its old partitions when it wakes, before it learns
            # they are gone.
            produce_events(prod, topics, parts[2 + 2 * cycle])
        finally:
            zombie.proc.send_signal(signal.SIGCONT)
        wait(lambda: 0 < owned(other) < 6, 90, "the resumed worker to rejoin")
        if dropped(zombie) > dropped_before:
            break
    produce_events(prod, topics, [e for part in parts[3 + 2 * cycle :] for e in part])

    wait_for_actions(actions, want, 120, f"all {len(want)} actions")  # none lost, none changed
    # (a refused checkpoint may come after the metrics were read in the loop)
    assert dropped(zombie) > dropped_before, "no batch in the resumed worker's hand was dropped"
    fenced = zombie.wait_metrics().get("tact_fenced_batches_total", 0.0)
    assert ("checkpoint refused" in zombie.log()) == (fenced > 0)
    assert zombie.proc.poll() is None and other.proc.poll() is None
    zombie_events = zombie.wait_metrics().get('tact_events_total{type="add_to_cart"}', 0)
    assert zombie_events > 0  # it works again after rejoining
