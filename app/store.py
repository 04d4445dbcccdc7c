"""Where customer state and input offsets are checkpointed, behind one small interface.

A checkpoint is atomic: the states of the customers a batch touched, the next offset of every
input partition it read, the models' changed fields, and when each touched customer's next
attribution window ends (the due index, per input partition) are written together. After a crash the
worker resumes from the checkpoint, skips records below those offsets (their effects are already
in the state) and re-decides the rest from exactly the state and models they first saw, so a
redelivered action is byte-for-byte the action first sent.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Protocol

# customer -> (input partition, end of their earliest open window; None: no window open)
Due = Mapping[str, tuple[int, float | None]]


def partition_key(topic: str, partition: int) -> str:
    """The name an input partition's offset is stored under."""
    return f"{topic}:{partition}"


class StateStore(Protocol):
    """Checkpoint storage. Implementations: InMemoryStateStore, RedisStateStore."""

    async def load_offsets(self) -> dict[str, int]:
        """Next offset to process, per `topic:partition`, as of the last checkpoint."""
        ...

    async def load_customers(self, customer_ids: Iterable[str]) -> dict[str, bytes]:
        """Serialised states of those customers the store has (absent ids are new)."""
        ...

    async def load_models(self) -> dict[str, bytes]:
        """The checkpointed model fields (empty before the first checkpoint)."""
        ...

    async def load_due(self, partition: int, until: float, limit: int) -> list[str]:
        """Customers of `partition` with a window that ended by `until` (earliest first)."""
        ...

    async def commit(
        self,
        customers: Mapping[str, bytes],
        offsets: Mapping[str, int],
        models: Mapping[str, bytes],
        due: Due | None = None,
    ) -> None:
        """Atomically write states, offsets, changed model fields and due entries."""
        ...

    async def close(self) -> None: ...


class InMemoryStateStore:
    """A StateStore in a dict: for tests, replays and single-process use."""

    def __init__(self) -> None:
        self.customers: dict[str, bytes] = {}
        self.offsets: dict[str, int] = {}
        self.models: dict[str, bytes] = {}
        self.due: dict[int, dict[str, float]] = {}
        self.commits = 0

    async def load_offsets(self) -> dict[str, int]:
        return dict(self.offsets)

    async def load_customers(self, customer_ids: Iterable[str]) -> dict[str, bytes]:
        return {cid: self.customers[cid] for cid in customer_ids if cid in self.customers}

    async def load_models(self) -> dict[str, bytes]:
        return dict(self.models)

    async def load_due(self, partition: int, until: float, limit: int) -> list[str]:
        entries = self.due.get(partition, {})
        found = sorted((end, cid) for cid, end in entries.items() if end <= until)
        return [cid for _, cid in found[:limit]]

    async def commit(
        self,
        customers: Mapping[str, bytes],
        offsets: Mapping[str, int],
        models: Mapping[str, bytes],
        due: Due | None = None,
    ) -> None:
        self.customers.update(customers)
        self.offsets.update(offsets)
        self.models.update(models)
        for cid, (partition, end) in (due or {}).items():
            entries = self.due.setdefault(partition, {})
            if end is None:
                entries.pop(cid, None)
            else:
                entries[cid] = end
        self.commits += 1

    async def close(self) -> None:
        return None
