"""Where customer state and input offsets are checkpointed, behind one small interface.

A checkpoint is atomic: the states of the customers a batch touched, the next offset of every
input partition it read, the models' changed fields, and when each touched customer's next
attribution window ends (the due index, per input partition) are written together (on Redis
Cluster: together per input partition, whose keys share one slot). After a crash the
worker resumes from the checkpoint, skips records below those offsets (their effects are already
in the state) and re-decides the rest from exactly the state and models they first saw, so a
redelivered action is byte-for-byte the action first sent.

Checkpoints are fenced: a worker takes a new epoch for each input partition it is assigned
(`claim`) and every commit presents them; a commit after another worker has claimed one of
those partitions since (a zombie: paused past its session timeout, its partitions moved on)
is refused whole (`Fenced`), so it can never write states or move offsets behind the new
owner's back.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Protocol

# customer -> (input partition, end of their earliest open window; None: no window open)
Due = Mapping[str, tuple[int, float | None]]
# customer -> (input partition, serialised state)
States = Mapping[str, tuple[int, bytes]]
# input partition -> the epoch its owner claimed
Epochs = Mapping[int, int]


class Fenced(Exception):
    """A commit refused, nothing of it written (or a read refused): another worker has
    claimed one of its partitions since this one did."""


def partition_key(topic: str, partition: int) -> str:
    """The name an input partition's offset is stored under."""
    return f"{topic}:{partition}"


def partition_of_key(key: str) -> int:
    """The input partition of an offset's name (`partition_key`)."""
    return int(key.rsplit(":", 1)[1])


def check_fence(fence: Epochs | None, current: Mapping[int, int | None]) -> None:
    """Fenced, naming them, if another worker has claimed any partition of `fence` since
    (`current`: each partition's epoch now; absent or None: never claimed)."""
    fence = fence or {}
    taken = sorted(p for p, epoch in fence.items() if current.get(p) != epoch)
    if taken:
        raise Fenced(
            "partitions "
            + ", ".join(f"{p} (epoch {fence[p]}, now {current.get(p)})" for p in taken)
            + " were claimed by another worker"
        )


class StateStore(Protocol):
    """Checkpoint storage. Implementations: InMemoryStateStore, RedisStateStore."""

    async def load_offsets(self, partitions: Iterable[int]) -> dict[str, int]:
        """Next offset to process, per `topic:partition`, of these input partitions (every
        input topic's), as of the last checkpoint."""
        ...

    async def load_customers(
        self, customers: Mapping[str, int], fence: Epochs | None = None
    ) -> dict[str, bytes]:
        """Serialised states of those customers (id -> their input partition) the store has
        (absent ids are new); with
        `fence`, read in one snapshot with the epochs, and only if each partition's epoch is
        still the one given (else Fenced): a worker whose partitions moved on must not read
        what their new owner wrote, ahead of the offsets it holds."""
        ...

    async def load_models(self) -> dict[str, bytes]:
        """The checkpointed model fields (empty before the first checkpoint)."""
        ...

    async def load_due(
        self, partitions: Iterable[int], until: float, limit: int
    ) -> dict[int, list[str]]:
        """Per partition of `partitions`, at most `limit` of its customers with a window that
        ended by `until`, earliest first (one round trip for them all)."""
        ...

    async def load_clocks(self, partitions: Iterable[int]) -> dict[int, float]:
        """The event-time clocks checkpointed for these input partitions (absent: none yet)."""
        ...

    async def claim(self, partitions: Iterable[int]) -> dict[int, int]:
        """Take these input partitions: a new epoch for each (greater than any before)."""
        ...

    async def commit(
        self,
        customers: States,
        offsets: Mapping[str, int],
        models: Mapping[str, bytes],
        due: Due | None = None,
        fence: Epochs | None = None,
        clocks: Mapping[int, float] | None = None,
        journal: Mapping[int, bytes] | None = None,
    ) -> None:
        """Atomically write states, offsets, changed model fields, due entries, the input
        partitions' clocks and, per input partition, an entry of the learner's journal (what
        the batch's changes of the partition's customers teach, app/models.py, for `tact
        learner`: once, even when a write is tried again after it landed, its reply lost);
        with `fence`, only if each partition's epoch
        is still the one given (else Fenced, and nothing is written). On Redis Cluster the
        write is atomic per input partition (each partition's keys share one hash slot),
        and models are not written (one learner writes them)."""
        ...

    async def models_version(self) -> int:
        """How many times the learner has published the models (0: never)."""
        ...

    async def load_models_since(self, version: int) -> dict[str, bytes] | None:
        """The fields of the models the learner has published that changed after its
        publication `version`, `core` and `version` among them, all of one publication; None
        when it cannot say (load them all then)."""
        ...

    async def close(self) -> None: ...


class InMemoryStateStore:
    """A StateStore in a dict: for tests, replays and single-process use."""

    def __init__(self) -> None:
        self.customers: dict[str, bytes] = {}
        self.offsets: dict[str, int] = {}
        self.models: dict[str, bytes] = {}
        self.due: dict[int, dict[str, float]] = {}
        self.epochs: dict[int, int] = {}
        self.clocks: dict[int, float] = {}
        self.journal: list[bytes] = []  # every partition's entries, in commit order
        self.journals: dict[int, list[bytes]] = {}  # the same, per input partition
        self.version = 0
        self.changed: dict[str, int] = {}  # field -> the publication that changed it last
        self.commits = 0

    async def load_offsets(self, partitions: Iterable[int]) -> dict[str, int]:
        wanted = set(partitions)
        return {k: v for k, v in self.offsets.items() if partition_of_key(k) in wanted}

    async def load_customers(
        self, customers: Mapping[str, int], fence: Epochs | None = None
    ) -> dict[str, bytes]:
        ids = list(customers)
        if ids:  # (nothing read: nothing to refuse)
            self._check(fence)
        return {cid: self.customers[cid] for cid in ids if cid in self.customers}

    def _check(self, fence: Epochs | None) -> None:
        check_fence(fence, {p: self.epochs.get(p, 0) for p in fence or {}})

    async def load_models(self) -> dict[str, bytes]:
        return dict(self.models)

    async def load_due(
        self, partitions: Iterable[int], until: float, limit: int
    ) -> dict[int, list[str]]:
        found = {}
        for partition in partitions:
            entries = self.due.get(partition, {})
            ended = sorted((end, cid) for cid, end in entries.items() if end <= until)
            found[partition] = [cid for _, cid in ended[:limit]]
        return found

    async def load_clocks(self, partitions: Iterable[int]) -> dict[int, float]:
        return {p: self.clocks[p] for p in partitions if p in self.clocks}

    async def claim(self, partitions: Iterable[int]) -> dict[int, int]:
        claimed = {}
        for partition in partitions:
            claimed[partition] = self.epochs[partition] = self.epochs.get(partition, 0) + 1
        return claimed

    async def commit(
        self,
        customers: States,
        offsets: Mapping[str, int],
        models: Mapping[str, bytes],
        due: Due | None = None,
        fence: Epochs | None = None,
        clocks: Mapping[int, float] | None = None,
        journal: Mapping[int, bytes] | None = None,
    ) -> None:
        self._check(fence)
        for partition, entry in sorted((journal or {}).items()):
            self.journal.append(entry)
            self.journals.setdefault(partition, []).append(entry)
        self.customers.update({cid: blob for cid, (_, blob) in customers.items()})
        self.offsets.update(offsets)
        self.models.update(models)
        self.clocks.update(clocks or {})
        for cid, (partition, end) in (due or {}).items():
            entries = self.due.setdefault(partition, {})
            if end is None:
                entries.pop(cid, None)
            else:
                entries[cid] = end
        self.commits += 1

    async def models_version(self) -> int:
        return self.version

    async def load_models_since(self, version: int) -> dict[str, bytes] | None:
        names = [name for name, at in self.changed.items() if at > version]
        if "core" not in names:
            return None
        return {name: self.models[name] for name in names} | {"version": self.models["version"]}

    def publish(self, fields: Mapping[str, bytes]) -> int:
        """Write changed model fields as `tact learner` publishes them (app/io/learner.py):
        with the publication's number, in the hash and the counter, and what it changed."""
        self.version += 1
        self.models.update(fields)
        self.models["version"] = str(self.version).encode()
        self.changed.update(dict.fromkeys(fields, self.version))
        return self.version

    async def close(self) -> None:
        return None
