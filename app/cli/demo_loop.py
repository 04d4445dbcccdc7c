"""`tact demo --world`: the simulator's shoppers in a live closed loop through Kafka.

A simulated world (app/simulate) plays its shoppers' events into the demo's input topics;
the real `tact worker` decides; each event's Actions are read back from `actions` and the
world's shoppers respond to them by its ground truth (clicks, orders, unsubscribes), which go
back in as events. The simulator plays the connectors' part (onsite offers at once, messages
at `not_before`, holdouts never), as in `tact simulate`.

The same shoppers are first run in-process with no upselling at all, so the live line can
say what tact has added so far against that, at the same simulated time: the incremental
profit, the share of decisions that were restraint (`protect`), and the version of the
models the worker is deciding with.
"""

from __future__ import annotations

import time
from bisect import bisect_right
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from kafka import TopicPartition

from app import codec
from app.catalog import Catalog
from app.errors import TactError
from app.io import clients
from app.io.redis_store import checkpointed
from app.policy import load_policy
from app.sample import demo_catalog
from app.settings import Settings
from app.simulate.baselines import NeverUpsell
from app.simulate.loop import Simulation
from app.simulate.population import populate
from app.simulate.run import world_catalog
from app.simulate.world import WorldSpec, load_world
from schemas import FAMILY_OF_TYPE, Action

_WAIT_S = 60.0  # the worker must have handled an event within this


def demo_world(name: str, customers: int, days: float) -> WorldSpec:
    """The world, shrunk to `customers` over the last `days` (so no event is dated after
    the worker's clock: those are dead letters)."""
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(days=days)
    return load_world(name).model_copy(
        update={
            "customers": customers,
            "days": days,
            "arrival_days": max(days / 2, 1.0),
            "start": start.isoformat(),
        }
    )


class Baseline:
    """Never-upselling on the same shoppers: its profit by simulated time."""

    def __init__(self, world: WorldSpec, catalog: Catalog, seed: int) -> None:
        customers = populate(world, catalog, seed, prefix="live")
        never = NeverUpsell(catalog, load_policy(None), seed)
        self.times: list[float] = []
        self.profits: list[float] = []
        sim = Simulation(world, catalog, customers, never, seed, on_event=self._at)
        self.ledger = sim.ledger
        sim.run()
        self.final = self.ledger.profit

    def _at(self, event: dict[str, Any]) -> None:
        self.times.append(datetime.fromisoformat(event["ts"]).timestamp())
        self.profits.append(self.ledger.profit)

    def profit_at(self, t: float) -> float:
        i = bisect_right(self.times, t)
        return self.profits[i - 1] if i else 0.0


class LiveEngine:
    """The simulator's policy: each event into Kafka, the worker's Actions for it back."""

    name = "tact"

    def __init__(self, settings: Settings, on_action: Callable[[dict[str, Any]], None]) -> None:
        self.settings = settings
        self.on_action = on_action
        self.topics = {"clickstream": settings.topic_clickstream, "orders": settings.topic_orders}
        self.producer = clients.producer(settings, linger_ms=0)
        self.redis = clients.redis_client(settings)
        self.reader = clients.consumer(settings, enable_auto_commit=False)
        parts = sorted(self.reader.partitions_for_topic(settings.topic_actions) or ())
        self.parts = [TopicPartition(settings.topic_actions, p) for p in parts]
        self.reader.assign(self.parts)
        self.reader.seek_to_beginning()
        self.waiting: dict[str, list[Action]] = {}  # source event id -> its Actions
        self.events = 0

    def process(self, event: dict[str, Any]) -> list[Action]:
        topic = self.topics[FAMILY_OF_TYPE[event["type"]]]
        sent = self.producer.send(
            topic, key=event["customer_id"].encode(), value=codec.dumps(event)
        ).get(timeout=_WAIT_S)
        self._wait_handled(f"{topic}:{sent.partition}", sent.offset)
        self._read_actions()
        self.events += 1
        return self.waiting.pop(event["event_id"], [])

    def _wait_handled(self, field: str, offset: int) -> None:
        """Until the worker's checkpoint is past `offset` (its Actions were sent before)."""
        deadline = time.monotonic() + _WAIT_S
        while checkpointed(self.redis, self.settings.redis_prefix).get(field, 0) <= offset:
            if time.monotonic() > deadline:
                raise TactError(
                    f"the worker has not handled {field} offset {offset} in {_WAIT_S:g} s; "
                    "see its log"
                )
            time.sleep(0.002)

    def _read_actions(self) -> None:
        ends = self.reader.end_offsets(self.parts)
        while any(self.reader.position(tp) < end for tp, end in ends.items()):
            for records in self.reader.poll(timeout_ms=100).values():
                for record in records:
                    data = codec.loads(record.value)
                    self.on_action(data)
                    action = Action.model_validate_json(record.value)
                    self.waiting.setdefault(action.source_event_id, []).append(action)

    def close(self) -> None:
        self.producer.close()
        self.reader.close()
        self.redis.close()


class Loop:
    """Runs the world against the live worker, saying how it goes every few seconds."""

    def __init__(
        self,
        settings: Settings,
        world: WorldSpec,
        seed: int,
        say: Callable[[str], None],
        show: Callable[[dict[str, Any]], None],
        every_s: float = 3.0,
    ) -> None:
        self.settings = settings
        self.world = world
        self.seed = seed
        self.say = say
        self.show = show
        self.every_s = every_s
        self.plays: Counter[str] = Counter()
        self.model = "at their priors"
        self.catalog = world_catalog(world, demo_catalog())

    def baseline(self) -> Baseline:
        return Baseline(self.world, self.catalog, self.seed)

    def run(self, never: Baseline) -> dict[str, Any]:
        engine = LiveEngine(self.settings, self._action)
        customers = populate(self.world, self.catalog, self.seed, prefix="live")
        sim = Simulation(self.world, self.catalog, customers, engine, self.seed)
        start, last = time.monotonic(), 0.0
        process = engine.process

        def paced(event: dict[str, Any]) -> list[Action]:
            nonlocal last
            actions = process(event)
            if time.monotonic() - last >= self.every_s:
                last = time.monotonic()
                self.say(self._line(sim, never, datetime.fromisoformat(event["ts"]).timestamp()))
            return actions

        engine.process = paced  # type: ignore[method-assign]
        try:
            ledger = sim.run()
        finally:
            engine.close()
        self.say(self._line(sim, never, sim.end))  # the last days, whatever the pace
        added = ledger.profit - never.final
        return {
            "events": engine.events,
            "seconds": time.monotonic() - start,
            "added": added,
            "per_customer": added / max(len(customers), 1),
            "never": never.final,
            "tact": ledger.profit,
            "plays": dict(self.plays),
            "accepted": ledger.offers_accepted,
            "unsubscribes": ledger.unsubscribes,
            "model": self.model,
        }

    def _action(self, action: dict[str, Any]) -> None:
        self.plays[action["play"]] += 1
        self.model = action["model_version"]
        if action["play"] != "protect":
            self.show(action)

    def _line(self, sim: Simulation, never: Baseline, t: float) -> str:
        day = (t - sim.start) / 86400
        decided = sum(self.plays.values())
        protect = self.plays["protect"] / decided if decided else 0.0
        added = sim.ledger.profit - never.profit_at(t)
        return (
            f"-- day {day:4.1f} of {self.world.days:g}: {sim.ledger.events:,} events, "
            f"{decided:,} decisions ({protect:.0%} restraint), "
            f"{sim.ledger.offers_accepted:,} offers taken; profit added so far "
            f"{added:+,.2f} against never upselling the same shoppers; models {self.model}"
        )
