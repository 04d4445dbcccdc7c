"""`tact demo --world`: the simulator's shoppers in a live closed loop through Kafka.

A simulated world (app/simulate) plays its shoppers' events into the demo's input topics;
the real `tact worker` decides; each event's Actions are read back from `actions` and the
world's shoppers respond to them by its ground truth (clicks, orders, unsubscribes), which go
back in as events. The simulator plays the connectors' part (onsite offers at once, messages
at `not_before`, holdouts never), as in `tact simulate`.

The same shoppers are first run in-process twice: with no upselling at all, and with tact's
models kept at the policy's priors (no learning, no exploration). So the live line can say
what tact has added so far against never upselling, at the same simulated time, beside what
the same engine adds without learning: the gap between the two is what the worker has
learned from the Outcomes. The line also gives the share of decisions that were restraint
(`protect`) and the version of the models the worker decides with.

The loop waits for the worker only on the events that can make an Action (a product view, a
cart, a checkout, an order, a protect trigger: `app.decisions.may_act`); the others are sent
without waiting, in order on their customer's partition; before a customer's event goes to
the other input topic, the last one sent without waiting is waited for (the worker reads the
two topics independently).
"""

from __future__ import annotations

import time
from bisect import bisect_right
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from kafka import TopicPartition

from app import codec
from app.catalog import Catalog
from app.decisions import may_act
from app.engine import DecisionEngine
from app.errors import TactError
from app.io import clients
from app.io.redis_store import checkpointed
from app.policy import load_policy
from app.sample import demo_catalog
from app.settings import Settings
from app.simulate.baselines import NeverUpsell
from app.simulate.loop import Simulation
from app.simulate.population import populate
from app.simulate.run import EngineRun, world_catalog
from app.simulate.world import WorldSpec, load_world
from schemas import FAMILY_OF_TYPE, Action

_WAIT_S = 60.0  # the worker must have handled an event within this
# The world's size by default: enough Outcomes in about a minute and a half for learning to
# show against the same engine at its priors (tests/unit/test_demo_loop.py).
SHOPPERS = 300
DAYS = 20.0


def demo_world(name: str, customers: int, days: float, now: datetime | None = None) -> WorldSpec:
    """The world, shrunk to `customers` over the `days` before `now` (so no event is dated
    after the worker's clock: those are dead letters)."""
    now = now if now is not None else datetime.now(UTC)
    start = now.replace(microsecond=0) - timedelta(days=days)
    return load_world(name).model_copy(
        update={
            "customers": customers,
            "days": days,
            "arrival_days": max(days / 2, 1.0),
            "start": start.isoformat(),
        }
    )


class Trace:
    """A run's profit by simulated time."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self.profits: list[float] = []

    def record(self, t: float, profit: float) -> None:
        self.times.append(t)
        self.profits.append(profit)

    def profit_at(self, t: float) -> float:
        """The profit before anything after `t`."""
        i = bisect_right(self.times, t)
        return self.profits[i - 1] if i else 0.0


class Baseline:
    """A policy run in-process on the same shoppers first (never upselling by default)."""

    def __init__(
        self, world: WorldSpec, catalog: Catalog, seed: int, runner: Any | None = None
    ) -> None:
        customers = populate(world, catalog, seed, prefix="live")
        if runner is None:
            runner = NeverUpsell(catalog, load_policy(None), seed)
        self.trace = Trace()
        sim = Simulation(world, catalog, customers, runner, seed, on_event=self._at)
        self.ledger = sim.ledger
        sim.run()
        self.trace.record(sim.end, self.ledger.profit)
        self.final = self.ledger.profit

    def _at(self, event: dict[str, Any]) -> None:
        self.trace.record(datetime.fromisoformat(event["ts"]).timestamp(), self.ledger.profit)

    def profit_at(self, t: float) -> float:
        return self.trace.profit_at(t)


def not_learning(catalog: Catalog, seed: int, policy_path: Path | None = None) -> EngineRun:
    """tact with its models kept at the policy's priors (the worker's policy: TACT_POLICY, or
    the built-in one): no learning, no exploration."""
    policy = load_policy(policy_path)
    frozen = policy.model_copy(
        update={
            "learning": policy.learning.model_copy(update={"enabled": False}),
            "exploration": policy.exploration.model_copy(update={"enabled": False}),
        }
    )
    return EngineRun(DecisionEngine(catalog, frozen, seed))


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
        # customer -> (topic, send) of their latest event not waited for
        self.unwaited: dict[str, tuple[str, Any]] = {}
        self.failed: list[BaseException] = []  # sends not waited for that failed
        self.events = 0

    def process(self, event: dict[str, Any]) -> list[Action]:
        topic = self.topics[FAMILY_OF_TYPE[event["type"]]]
        customer = event["customer_id"]
        self._check_sent()
        before = self.unwaited.pop(customer, None)
        if before is not None and before[0] != topic:
            # the worker reads the two topics independently: the customer's event on the
            # other topic must be in before this one goes out
            self._wait_sent(before[0], before[1])
        sending = self.producer.send(topic, key=customer.encode(), value=codec.dumps(event))
        self.events += 1
        if not may_act(event):  # it makes no Action: sent without waiting (in order, on its
            self.unwaited[customer] = (topic, sending)  # customer's partition of `topic`)
            sending.add_errback(self.failed.append)
            return []
        self._wait_sent(topic, sending)
        self._read_actions()
        return self.waiting.pop(event["event_id"], [])

    def _check_sent(self) -> None:
        if self.failed:
            raise TactError(f"an event could not be sent to Kafka: {self.failed[0]}")

    def _wait_sent(self, topic: str, sending: Any) -> None:
        """Until the worker has handled the record of `sending` (raises if it was not sent)."""
        sent = sending.get(timeout=_WAIT_S)
        self._wait_handled(f"{topic}:{sent.partition}", sent.offset)

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
        try:
            self.producer.flush()
            self._check_sent()  # a send that failed is not silent
        finally:
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
        shown_per_line: int = 3,
    ) -> None:
        self.settings = settings
        self.world = world
        self.seed = seed
        self.say = say
        self.show = show
        self.every_s = every_s
        self.shown_per_line = shown_per_line  # offers shown between two status lines
        self.shown = 0
        self.plays: Counter[str] = Counter()
        self.model = "at their priors"
        self.catalog = world_catalog(world, demo_catalog())

    def baselines(self) -> tuple[Baseline, Baseline]:
        """Never upselling, and tact at its priors, on the same shoppers."""
        return (
            Baseline(self.world, self.catalog, self.seed),
            Baseline(
                self.world,
                self.catalog,
                self.seed,
                not_learning(self.catalog, self.seed, self.settings.policy),
            ),
        )

    def run(self, never: Baseline, frozen: Baseline) -> dict[str, Any]:
        engine = LiveEngine(self.settings, self._action)
        customers = populate(self.world, self.catalog, self.seed, prefix="live")
        live = Trace()
        sim = Simulation(self.world, self.catalog, customers, engine, self.seed)
        start, last = time.monotonic(), 0.0
        process = engine.process

        def paced(event: dict[str, Any]) -> list[Action]:
            nonlocal last
            t = datetime.fromisoformat(event["ts"]).timestamp()
            live.record(t, sim.ledger.profit)
            actions = process(event)
            if time.monotonic() - last >= self.every_s:
                last = time.monotonic()
                self.say(self._line(sim, never, frozen, t))
            return actions

        engine.process = paced  # type: ignore[method-assign]
        try:
            ledger = sim.run()
        finally:
            engine.close()
        live.record(sim.end, ledger.profit)
        self.say(self._line(sim, never, frozen, sim.end))  # the last days, whatever the pace
        added = ledger.profit - never.final
        return {
            "events": engine.events,
            "seconds": time.monotonic() - start,
            "added": added,
            "per_customer": added / max(len(customers), 1),
            "never": never.final,
            "tact": ledger.profit,
            "frozen": frozen.final - never.final,
            "periods": periods(sim.start, self.world.days, live, frozen.trace, never.trace),
            "plays": dict(self.plays),
            "accepted": ledger.offers_accepted,
            "unsubscribes": ledger.unsubscribes,
            "model": self.model,
        }

    def _action(self, action: dict[str, Any]) -> None:
        self.plays[action["play"]] += 1
        self.model = action["model_version"]
        if action["play"] != "protect" and self.shown < self.shown_per_line:
            self.shown += 1
            self.show(action)

    def _line(self, sim: Simulation, never: Baseline, frozen: Baseline, t: float) -> str:
        self.shown = 0
        day = (t - sim.start) / 86400
        decided = sum(self.plays.values())
        protect = self.plays["protect"] / decided if decided else 0.0
        added = sim.ledger.profit - never.profit_at(t)
        at_priors = frozen.profit_at(t) - never.profit_at(t)
        return (
            f"-- day {day:4.1f} of {self.world.days:g}: {sim.ledger.events:,} events, "
            f"{decided:,} decisions ({protect:.0%} restraint), "
            f"{sim.ledger.offers_accepted:,} offers taken; added so far against never "
            f"upselling: tact {added:+,.2f}, at its priors {at_priors:+,.2f}; "
            f"models {self.model}"
        )


def periods(
    start: float, days: float, live: Trace, frozen: Trace, never: Trace, n: int = 5
) -> list[tuple[float, float, float, float]]:
    """Per fifth of the run: its days, and what tact live and tact at its priors added in it
    against never upselling."""
    rows = []
    for i in range(n):
        a, b = start + days * 86400 * i / n, start + days * 86400 * (i + 1) / n

        def added(trace: Trace, a: float = a, b: float = b) -> float:
            return (trace.profit_at(b) - trace.profit_at(a)) - (
                never.profit_at(b) - never.profit_at(a)
            )

        rows.append((days * i / n, days * (i + 1) / n, added(live), added(frozen)))
    return rows
