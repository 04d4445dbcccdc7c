"""Three workers (and a learner), 12 partitions, one of them SIGKILLed every few seconds while
tens of thousands of events flow. Learning on (the learner killed once too): every event is
learned from exactly once, the learner's models are exactly one process's fold of what the
workers checkpointed, and an action sent twice keeps its identity. Learning off: exactly one
process's Actions, every copy identical."""

from __future__ import annotations

import random
import signal
import threading
import time
from collections import Counter, defaultdict
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from app import codec
from app.engine import DecisionEngine
from app.io import clients
from app.io.kafka_admin import ensure_topics
from app.io.learner import published
from app.io.redis_store import journal_key, version_key
from app.models import Models
from app.policy import load_policy
from app.sample import demo_catalog, generate
from app.settings import Settings
from tests.integration.conftest import free_port, own
from tests.integration.kafka_helpers import (
    TopicReader,
    first_copies,
    produce_events,
    producer,
    wait,
    wait_for_actions,
)
from tests.integration.test_learner import _policy
from tests.integration.test_worker import (
    clickstream_only,
    expected_actions,
    per_customer,
    topics_of,
)

KILLS = 10
STABLE = ("action_id", "customer_id", "ts", "source_event_id")  # the same on every copy


class Journal:
    """Every entry the workers write to the partitions' journals, read as it comes (the
    learner trims what it has published)."""

    def __init__(self, client: Any, prefix: str, partitions: int) -> None:
        self.client, self.prefix, self.partitions = client, prefix, partitions
        self.entries: list[tuple[tuple[int, int], int, str, bytes]] = []  # (order, p, id, ..)
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        last = dict.fromkeys(range(self.partitions), "-")
        while not self.stopping.is_set():
            for partition, start in last.items():  # (one stream at a time: a cluster's
                key = journal_key(self.prefix, partition)  # streams are in other slots)
                for entry_id, data in self.client.xrange(key, start, "+"):
                    text = entry_id.decode()
                    ms, seq = text.split("-")
                    self.entries.append(((int(ms), int(seq)), partition, text, data[b"changes"]))
                    last[partition] = f"({text}"
            time.sleep(0.05)

    def last(self) -> dict[str, str]:
        """Each journal's last entry, as the learner names its position when published."""
        return {f"journal:{p}": entry_id for _, p, entry_id, _ in sorted(self.entries)}

    def added(self) -> int:
        """How many entries the journals were ever given (Redis's own count)."""
        total = 0
        for partition in range(self.partitions):
            key = journal_key(self.prefix, partition)
            if self.client.exists(key):
                total += self.client.xinfo_stream(key)["entries-added"]
        return total

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join()


@pytest.mark.parametrize("where", ["one redis-server", "a Redis Cluster"])
def test_three_workers_and_a_learner_through_a_kill_storm(
    base_settings: Settings, start_worker: Any, tmp_path: Path, where: str, request: Any
) -> None:
    """On one redis-server, and on a three-node Redis Cluster (each partition's checkpoint
    one transaction in its own slot; the journals on three nodes, folded in one order)."""
    # publishing every 3 s: the journal's reader below has that long to read an entry
    # before the learner trims it (a miss fails the test, never passes it)
    policy = _policy(tmp_path, seconds=3.0)
    # 100 customers kept as states, the others cold (compressed bytes) between their events
    update: dict[str, Any] = {
        "topic_partitions": 12,
        "learner": True,
        "batch_max": 100,
        "hot_customers": 100,
    }
    if where == "a Redis Cluster":
        update["redis_url"] = SecretStr(request.getfixturevalue("redis_cluster_url"))
    settings = base_settings.model_copy(update=own("tact-storm") | update | {"policy": policy})
    ensure_topics(settings)
    events = list(generate(1500, seed=31, arrival_span=timedelta(days=10)))
    customers = {e["customer_id"] for e in events}
    orders = sum(e["type"] == "order_placed" for e in events)
    event_ids = {e["event_id"] for e in events}
    client = clients.redis_client(settings)
    prefix = settings.redis_prefix
    journal = Journal(client, prefix, 12)
    storm(settings, events, start_worker, learner=True)

    def learned_everything() -> bool:
        fields = published(client, prefix)
        if "core" not in fields:
            return False
        models = Models.from_fields(fields)
        return models.unsubscribes.customers >= len(customers) and models.order_value.n >= orders

    wait(learned_everything, 300, "the learner to learn from every event", every=1.0)
    actions = TopicReader(settings.kafka_bootstrap, settings.topic_actions)
    outcomes = TopicReader(settings.kafka_bootstrap, settings.topic_outcomes)
    actions.settle(quiet_s=5.0)
    outcomes.settle(quiet_s=2.0)

    def positions() -> dict[str, str]:
        fields = published(client, prefix)
        return {k: v.decode() for k, v in fields.items() if k.startswith("journal:")}

    wait(
        lambda: bool(journal.entries) and positions() == journal.last(),
        60,
        "the learner to publish the last journal entries",
    )
    journal.stop()

    # Every event was learned from exactly once, whatever the kills redelivered: each
    # customer's arrival and each order are one change of the models, made by whichever
    # worker checkpointed the event.
    fields = dict(published(client, prefix))
    models = Models.from_fields(fields)
    assert models.unsubscribes.customers == len(customers)
    assert models.order_value.n == orders
    assert models.accept.updates + len(models.accept.queue) > 0  # outcomes were learned

    # The learner's models, through its own kill, are exactly one uninterrupted fold of every
    # journal entry in the one order the learner folds in (by the ids Redis gave the
    # entries, the time checkpoints landed, then partition); the streams' own counts say no
    # entry was missed here.
    assert len(journal.entries) == journal.added()
    assert len({p for _, p, _, _ in journal.entries}) > 6  # (many partitions' journals)
    one = DecisionEngine(demo_catalog(), load_policy(policy)).models
    for _, _, _, changes in sorted(journal.entries):
        for change in codec.loads(changes):
            one.apply(change)
    want = one.changes()
    publication = int(client.get(version_key(prefix)))
    assert int(fields.pop("version")) == publication  # the hash names its publication
    for name in positions():
        del fields[name]
    assert fields.keys() == want.keys()
    assert {k: codec.loads(v) for k, v in fields.items()} == {
        k: codec.loads(v) for k, v in want.items()
    }

    # Actions: each for an event of the stream; an action sent twice (its batch redelivered
    # after a kill) keeps its identity, though its content may differ when newer models decided
    # it the second time; every Outcome is for an action sent.
    copies: dict[str, set[bytes]] = defaultdict(set)
    for r in actions.records:
        copies[codec.loads(r.value)["action_id"]].add(r.value)
    for values in copies.values():
        decoded = [codec.loads(v) for v in values]
        assert len({tuple(d[k] for k in STABLE) for d in decoded}) == 1
        assert decoded[0]["source_event_id"] in event_ids
    versions = Counter(codec.loads(r.value)["model_version"] for r in actions.records)
    assert len(versions) > 2, versions  # the workers swapped in published models
    numbers = {int(v.rsplit(".v", 1)[1]) for v in versions if ".v" in v}
    assert numbers and max(numbers) <= publication
    outcome_ids = {codec.loads(r.value)["action_id"] for r in outcomes.records}
    assert outcome_ids and outcome_ids <= set(copies)
    sent_twice = sum(len(r) > 1 for r in copies.values())
    differing: Counter[str] = Counter()  # which fields a copy decided again changed
    for values in copies.values():
        decoded = [codec.loads(v) for v in values]
        differing.update(k for k in decoded[0] if any(d[k] != decoded[0][k] for d in decoded))
    print(
        f"kill storm on {where}: {len(events)} events, {KILLS} worker kills and 1 learner kill; "
        f"{len(copies)} actions, {len(actions.records) - len(copies)} sent again, "
        f"{sent_twice} of them changed; {len(journal.entries)} journal entries; "
        f"{len(versions)} model versions; fields that changed: {dict(differing)}"
    )


def storm(
    settings: Settings, events: list[dict[str, Any]], start_worker: Any, learner: bool
) -> None:
    """Three workers (and a learner) while `events` are produced over about 35 s: a random
    worker SIGKILLed and restarted every 2 to 3.5 s, KILLS times (the learner once, at the
    half), most of them while the stream flows."""
    prod = producer(settings.kafka_bootstrap)

    def produce_slowly() -> None:
        for i in range(0, len(events), 200):
            produce_events(prod, topics_of(settings), events[i : i + 200])
            time.sleep(0.3)

    def worker() -> Any:
        return start_worker(settings.model_copy(update={"metrics_port": free_port()}))

    workers = [worker() for _ in range(3)]
    learning = start_worker(settings, "learner") if learner else None
    feeder = threading.Thread(target=produce_slowly)
    feeder.start()
    rng = random.Random(7)
    kills, during_stream = 0, 0
    while kills < KILLS:
        time.sleep(rng.uniform(2.0, 3.5))
        i = rng.randrange(len(workers))
        workers[i].kill(signal.SIGKILL)
        workers[i] = worker()
        kills += 1
        during_stream += feeder.is_alive()
        if learning is not None and kills == KILLS // 2:  # its successor carries on from
            learning.kill(signal.SIGKILL)  # what it published
            learning = start_worker(settings, "learner")
    feeder.join()
    assert during_stream >= KILLS - 2, "the stream was over before most kills"


@pytest.mark.parametrize("where", ["one redis-server", "a Redis Cluster"])
def test_three_workers_learning_off_lose_and_change_nothing_through_a_kill_storm(
    base_settings: Settings, start_worker: Any, frozen_policy: Any, where: str, request: Any
) -> None:
    """Learning off and one topic: each customer's decisions depend only on its own events in
    order, so the storm must give exactly one process's Actions, every copy identical; on one
    server, and on a Redis Cluster (checkpoints cut between partitions' transactions)."""
    # (100 customers kept as states, the others cold between their events)
    update: dict[str, Any] = {"topic_partitions": 12, "batch_max": 100, "hot_customers": 100}
    if where == "a Redis Cluster":
        update["redis_url"] = SecretStr(request.getfixturevalue("redis_cluster_url"))
    settings = base_settings.model_copy(
        update=own("tact-storm-off") | update | {"policy": frozen_policy}
    )
    ensure_topics(settings)
    events = clickstream_only(list(generate(2000, seed=32, arrival_span=timedelta(days=10))))
    expected = expected_actions(events, frozen_policy)
    ids = {codec.loads(a)["action_id"] for acts in expected.values() for a in acts}
    storm(settings, events, start_worker, learner=False)
    actions = TopicReader(settings.kafka_bootstrap, settings.topic_actions)
    # nothing lost, nothing invented, every copy byte-identical
    records = wait_for_actions(actions, ids, 300, f"all {len(ids)} actions")
    assert per_customer(first_copies(records)) == expected  # in order per customer
    print(
        f"kill storm on {where}, learning off: {len(events)} events, {KILLS} worker kills; "
        f"{len(ids)} actions, {len(records) - len(ids)} sent again, all identical"
    )
