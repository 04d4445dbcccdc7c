"""A partition's input topics handed on merged in event time, as `tact replay` folds them.

A worker reads each input partition's clickstream and orders from two topic-partitions. Live,
each record comes soon after its event, so the two arrive in about the order the events
happened. Under a backlog (a restart after an outage, a first start on existing topics) they
do not: Kafka hands out a fetch of each, and a fetch of the sparse orders topic spans hours or
days more of event time than one of the clickstream. Folded in that order, orders count before
the clicks whose Actions they should have converted, and the partition's clock (the latest
event time of either topic) leaps ahead: windows close early, and once the orders topic has
been read to its end, the watermark stops while windows opened behind it stay open. (100,000
customers under a backlog: 2,232 conversions where replay of the same stream has 5,748.)

So records wait here, per topic-partition, and go on merged by event time within their input
partition (ties: in the order of `topics`, clickstream first), as Kafka Streams does for the
input partitions of a task. The earliest waiting record of a partition goes once each other
topic-partition of that partition either has a record waiting (so none earlier can come from
it) or is caught up: nothing more in Kafka, its position at the highwater of its last fetch.
A topic-partition that is neither (empty here, behind in Kafka) holds its partition back until
its records come, at most `wait_s` (a leader that does not answer must not stop the partition
for good: its other topic then goes on alone, counted in `timeouts`).

Pure: no Kafka and no clock of its own (the caller passes `now`, monotonic seconds).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from typing import Generic, NamedTuple, TypeVar

T = TypeVar("T")


class TP(NamedTuple):
    """A topic-partition (Faust's and aiokafka's are tuples of the same two fields)."""

    topic: str
    partition: int


class Aligner(Generic[T]):
    """Items of topic-partitions waiting to be taken in event time, per input partition."""

    def __init__(self, topics: Sequence[str], wait_s: float) -> None:
        self.rank = {topic: i for i, topic in enumerate(topics)}
        self.wait_s = wait_s
        self.queues: dict[TP, deque[tuple[float, T]]] = {}
        self.size = 0  # items waiting, all queues
        self.groups: dict[int, list[TP]] = {}  # input partition -> its topic-partitions
        self.known: frozenset[TP] = frozenset()  # the assigned ones (`progress`)
        self.caught_up: set[TP] = set()
        self.empty_since: dict[TP, float] = {}  # holding its partition back since (monotonic)
        self.expired: set[TP] = set()  # held it back `wait_s`: no longer, until its next item
        self.timeouts = 0  # times a partition went on without a topic-partition behind
        self.gone: list[TP] = []  # those topic-partitions, until the caller takes them
        self.turn = 0  # the partition taken from first rotates: none waits behind another

    def add(self, tp: TP, time: float, item: T) -> None:
        """An item of `tp`, after those added before it (offset order)."""
        queue = self.queues.get(tp)
        if queue is None:
            queue = self.queues[tp] = deque()
            if tp not in self.known:
                self._group(tp)
        queue.append((time, item))
        self.size += 1
        self.empty_since.pop(tp, None)
        self.expired.discard(tp)

    def progress(self, caught_up: Mapping[TP, bool]) -> bool:
        """The assigned topic-partitions, each with whether it is caught up. Whether that may
        let more be taken."""
        moved = False
        if caught_up.keys() != self.known:
            self.known = frozenset(caught_up)
            self.groups = {}
            for tp in sorted({*self.known, *self.queues}, key=self._order):
                self._group(tp)
            moved = True
        now_caught = {tp for tp, done in caught_up.items() if done}
        if now_caught - self.caught_up:
            moved = True
        self.caught_up = now_caught
        for tp in [*self.empty_since]:  # (caught up, or no longer assigned: no wait runs)
            if tp in now_caught or tp not in self.known:
                del self.empty_since[tp]
        self.expired &= self.known - now_caught
        return moved

    def _order(self, tp: TP) -> tuple[int, int, str]:
        return tp.partition, self.rank.get(tp.topic, len(self.rank)), tp.topic

    def _group(self, tp: TP) -> None:
        group = self.groups.setdefault(tp.partition, [])
        group.append(tp)
        group.sort(key=self._order)

    def take(self, limit: int, now: float) -> list[T]:
        """At most `limit` items that may go now, each partition's in event time."""
        out: list[T] = []
        partitions = list(self.groups)
        if not partitions:
            return out
        self.turn = (self.turn + 1) % len(partitions)
        for partition in partitions[self.turn :] + partitions[: self.turn]:
            if len(out) >= limit:
                break
            self._merge(self.groups[partition], limit, now, out)
        self.size -= len(out)
        return out

    def _merge(self, tps: list[TP], limit: int, now: float, out: list[T]) -> None:
        queues = [self.queues.get(tp) for tp in tps]
        if len(tps) == 1:  # (one topic: nothing to merge)
            queue = queues[0]
            while queue and len(out) < limit:
                out.append(queue.popleft()[1])
            return
        pairs = list(zip(tps, queues, strict=True))
        while len(out) < limit:
            first: deque[tuple[float, T]] | None = None
            for queue in queues:
                if queue and (first is None or queue[0][0] < first[0][0]):  # (ties: rank order)
                    first = queue
            if first is None:
                return
            for tp, queue in pairs:
                if not queue and not self._may_pass(tp, now):
                    return
            out.append(first.popleft()[1])

    def _may_pass(self, tp: TP, now: float, count: bool = True) -> bool:
        """Whether `tp`, with nothing waiting, lets its partition's others go on (its wait
        runs out, counted, only when it is taken from: `count`)."""
        if tp in self.caught_up or tp not in self.known or tp in self.expired:
            return True
        since = self.empty_since.setdefault(tp, now)
        if now - since < self.wait_s or not count:
            return False
        self.timeouts += 1
        self.expired.add(tp)
        self.gone.append(tp)
        return True

    def wanting(self, now: float) -> bool:
        """Whether a partition with items here is held back by a topic-partition with none and
        more in Kafka (the fetcher must bring its records, however much else waits)."""
        wanting = False
        queues = self.queues
        for tps in self.groups.values():
            if len(tps) > 1 and any(queues.get(tp) for tp in tps):
                for tp in tps:
                    if not queues.get(tp) and not self._may_pass(tp, now, count=False):
                        wanting = True
        return wanting

    def wake_in(self, now: float) -> float | None:
        """Seconds until a partition held back by an empty topic-partition may go on without
        it (None: none is)."""
        queues = self.queues
        waits = [
            since + self.wait_s - now
            for tp, since in self.empty_since.items()
            if tp not in self.expired
            and any(queues.get(other) for other in self.groups.get(tp.partition, ()))
        ]
        return max(min(waits), 0.0) if waits else None

    def longer_than(self, n: int) -> set[TP]:
        """The topic-partitions with at least `n` items waiting."""
        return {tp for tp, queue in self.queues.items() if len(queue) >= n}

    def clear(self) -> None:
        """Drop every item and what is known of the assignment (a revocation)."""
        self.queues.clear()
        self.size = 0
        self.groups.clear()
        self.known = frozenset()
        self.caught_up.clear()
        self.empty_since.clear()
        self.expired.clear()

    def items(self) -> Iterable[T]:
        """Every item waiting (for tests)."""
        for queue in self.queues.values():
            for _, item in queue:
                yield item
