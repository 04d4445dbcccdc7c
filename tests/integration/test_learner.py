"""One process learns (TACT_LEARNER=true, `tact learner`), on the real broker and Redis: the
workers write what they learn with their checkpoints and never the models; the learner folds
it, publishes versions the workers swap in, and holds a lease no second learner can take."""

from __future__ import annotations

import asyncio
import signal
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
import redis.asyncio as aioredis
import yaml

from app import codec
from app.engine import DecisionEngine
from app.io.learner import BadEntry, LeaseLost, ModelLearner, published
from app.io.redis_store import (
    RedisKeys,
    RedisStateStore,
    changed_key,
    journal_key,
    models_key,
    version_key,
)
from app.models import Models
from app.sample import demo_catalog, generate
from app.settings import Settings
from tests.integration.conftest import free_port
from tests.integration.kafka_helpers import TopicReader, produce_events, producer, wait
from tests.integration.test_worker import topics_of


def _client(settings: Settings) -> Any:
    return redis.Redis.from_url(settings.redis_url.get_secret_value())


def test_a_journal_entry_lands_with_its_checkpoint_and_the_learner_publishes_under_its_lease(
    stack: Settings,
) -> None:
    prefix = stack.redis_prefix
    client = _client(stack)

    async def commit() -> None:
        store = RedisStateStore(
            aioredis.Redis.from_url(stack.redis_url.get_secret_value()), prefix, 3600
        )
        changes = [["order", 80.0, ["A", "B"]], ["arrived", 5.0], ["message", "email"]]
        await store.claim([0])  # (a worker claims its partitions: the learner reads theirs)
        await store.commit({"c1": (0, b"{}")}, {"t:0": 3}, {}, journal={0: codec.dumps(changes)})
        assert await store.models_version() == 0
        await store.close()

    asyncio.run(commit())
    assert client.xlen(journal_key(prefix, 0)) == 1
    assert client.hlen(models_key(prefix)) == 0  # a worker with a learner writes no models

    first = ModelLearner(client, prefix, DecisionEngine(demo_catalog()))
    assert first.acquire()
    first.load()
    assert first.fold(block_ms=100) == 3
    assert first.publish() == 1
    models = Models.from_fields(published(client, prefix))
    assert models.affinity.pairs == {"A": {"B": 1.0}, "B": {"A": 1.0}}
    assert models.unsubscribes.customers == 1 and models.unsubscribes.sent == {"email": 1.0}
    assert int(client.get(version_key(prefix))) == 1
    assert published(client, prefix)["version"] == b"1"  # the hash names its publication
    assert client.xlen(journal_key(prefix, 0)) == 1  # (kept until the next publication)

    # A second publication: a worker at the first reads only the fields it changed.
    client.xadd(journal_key(prefix, 0), {"changes": codec.dumps([["order", 20.0, ["C", "D"]]])})
    assert first.fold(block_ms=100) == 1 and first.publish() == 2

    # Entries are trimmed one publication after the one that included them (up to its
    # position): the first stays through the second publication, and goes at the third.
    def journal() -> list[float]:
        entries = client.xrange(journal_key(prefix, 0))
        return [codec.loads(data[b"changes"])[0][1] for _, data in entries]

    assert journal() == [80.0, 20.0]

    async def since() -> tuple[Any, Any]:
        store = RedisStateStore(
            aioredis.Redis.from_url(stack.redis_url.get_secret_value()), prefix, 3600
        )
        try:
            return await store.load_models_since(1), await store.load_models_since(0)
        finally:
            await store.close()

    newer, everything = asyncio.run(since())
    assert newer == {
        "core": newer["core"],
        "affinity:C": b'{"D":1.0}',
        "affinity:D": b'{"C":1.0}',
        "version": b"2",
    }
    assert everything is not None and {"affinity:A", "affinity:B", "affinity:C"} <= set(everything)
    client.xadd(journal_key(prefix, 0), {"changes": codec.dumps([["order", 5.0, ["E", "F"]]])})
    assert first.fold(block_ms=100) == 1 and first.publish() == 3
    assert journal() == [20.0, 5.0]

    second = ModelLearner(client, prefix, DecisionEngine(demo_catalog()))
    tries = iter(range(2))
    assert not second.acquire(lambda: next(tries, None) is None)  # the lease is held
    client.delete(RedisKeys(prefix).lease)  # as if the first had been paused past its lease
    assert second.acquire()
    client.delete(changed_key(prefix))  # as published by a learner that kept no such record
    second.load()
    assert second.positions == first.positions == {0: second.positions[0]}  # it carries on
    # where the first published
    # every field now counts as changed by the latest publication: a worker holding an
    # older one reads them all
    assert client.zscore(changed_key(prefix), "affinity:A") == 3
    assert client.zscore(changed_key(prefix), "core") == 3
    with pytest.raises(LeaseLost):
        first.publish()
    with pytest.raises(LeaseLost):
        first.keep()
    first.release()  # (no longer its lease: nothing happens)
    assert client.get(RedisKeys(prefix).lease) is not None
    second.release()  # a clean stop: the next learner need not wait for the lease to expire
    third = ModelLearner(client, prefix, DecisionEngine(demo_catalog()))
    once = iter([False])
    assert third.acquire(lambda: next(once, True))  # at the first try
    client.xadd(journal_key(prefix, 0), {"changes": b'[["forget", "everything"]]'})
    third.load()
    with pytest.raises(BadEntry, match="cannot be folded"):
        third.fold(block_ms=100)


def _policy(tmp_path: Path, seconds: float = 1.0) -> Path:
    """The default policy, publishing every `seconds` (several versions in a short test)
    and not sooner."""
    from importlib import resources

    text = resources.files("app.policies").joinpath("default.yaml").read_text("utf-8")
    policy = yaml.safe_load(text)
    policy["learning"]["snapshot_seconds"] = seconds
    policy["learning"]["snapshot_changes"] = 10**9
    path = tmp_path / "learner-policy.yaml"
    path.write_text(yaml.safe_dump(policy))
    return path


def test_two_workers_and_a_learner_count_every_customer_once_through_a_sigkill(
    stack: Settings, start_worker: Any, tmp_path: Path
) -> None:
    events = list(generate(400, seed=21, arrival_span=timedelta(days=12)))
    customers = {e["customer_id"] for e in events}
    stack = stack.model_copy(update={"learner": True, "batch_max": 40, "policy": _policy(tmp_path)})
    client = _client(stack)
    prefix = stack.redis_prefix
    prod = producer(stack.kafka_bootstrap)

    def produce_slowly() -> None:  # about 20 s: the learner publishes meanwhile
        for i in range(0, len(events), 100):
            produce_events(prod, topics_of(stack), events[i : i + 100])
            time.sleep(0.4)

    feeder = threading.Thread(target=produce_slowly)
    first = start_worker(stack)
    start_worker(stack.model_copy(update={"metrics_port": free_port()}))
    feeder.start()
    actions = TopicReader(stack.kafka_bootstrap, stack.topic_actions)
    # Before the learner starts, the workers have checkpointed what they learned as journal
    # entries, and written no models.
    journaled = lambda: sum(client.xlen(journal_key(prefix, p)) for p in range(3))  # noqa: E731
    wait(lambda: journaled() > 0, 60, "journal entries")
    assert client.hlen(models_key(prefix)) == 0
    learner = start_worker(stack, "learner")
    wait(lambda: int(client.get(version_key(prefix)) or 0) >= 1, 60, "the first models")
    time.sleep(2.0)
    assert feeder.is_alive(), "the stream was over before the kill"
    first.kill(signal.SIGKILL)  # mid-stream: its batch in hand was never checkpointed
    start_worker(stack.model_copy(update={"metrics_port": free_port()}))  # its restart
    feeder.join()

    def learned_everyone() -> bool:
        fields = published(client, prefix)
        if "core" not in fields:
            return False
        return Models.from_fields(fields).unsubscribes.customers >= len(customers)

    wait(learned_everyone, 180, "the learner to count every customer", every=1.0)
    actions.settle(quiet_s=5.0)
    time.sleep(3.0)  # anything still in flight is folded and published
    models = Models.from_fields(published(client, prefix))
    # Each customer's first event was counted exactly once, whatever the kill redelivered.
    assert models.unsubscribes.customers == len(customers)
    assert models.accept.updates + len(models.accept.queue) > 0  # outcomes were learned
    versions = {codec.loads(r.value)["model_version"] for r in actions.records}
    assert len(versions) > 1, versions  # the workers swapped in published models
    assert int(client.get(version_key(prefix))) >= 2
    assert "learning from" in learner.log()
