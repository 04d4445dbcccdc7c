"""What every StateStore must do; run against the in-memory store (unit) and Redis
(integration)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from app.store import Fenced, StateStore


async def check_store_contract(store: StateStore) -> None:
    assert await store.load_offsets([0, 3]) == {}
    assert await store.load_customers({"a": 0, "b": 1}) == {}
    assert await store.load_customers({}) == {}

    await store.commit(
        {"a": (0, b'{"n":1}'), "b": (1, b"\x00\xffbinary")},
        {"clickstream:0": 10},
        {},
    )
    loaded = await store.load_customers({"a": 0, "b": 1, "c": 0})
    assert loaded == {"a": b'{"n":1}', "b": b"\x00\xffbinary"}
    assert await store.load_offsets([0, 3]) == {"clickstream:0": 10}

    await store.commit(
        {"a": (0, b'{"n":2}')},
        {"clickstream:0": 12, "orders:3": 4},
        {},
    )
    assert await store.load_customers({"a": 0}) == {"a": b'{"n":2}'}
    assert await store.load_customers({"b": 1}) == {"b": b"\x00\xffbinary"}
    assert await store.load_offsets([0, 3]) == {"clickstream:0": 12, "orders:3": 4}
    assert await store.load_offsets([3, 5]) == {"orders:3": 4}  # only the partitions asked

    await store.commit({}, {}, {})
    assert await store.load_offsets([0, 3]) == {"clickstream:0": 12, "orders:3": 4}
    odd = "cust:with spaces/and:colons}{"
    await store.commit({odd: (1, b"x")}, {}, {})
    assert await store.load_customers({odd: 1}) == {odd: b"x"}

    # The due index: per partition, customers whose earliest window has ended.
    assert (await store.load_due([0], 1e12, 10))[0] == []
    await store.commit({}, {}, {}, {"a": (0, 100.0), "b": (0, 50.0), odd: (1, 10.0)})
    assert (await store.load_due([0], 99.0, 10))[0] == ["b"]
    assert (await store.load_due([0], 100.0, 10))[0] == ["b", "a"]
    assert (await store.load_due([0], 100.0, 1))[0] == ["b"]
    assert (await store.load_due([1], 100.0, 10))[1] == [odd]
    # several partitions at once (the sweep's one round trip), each within the limit
    assert await store.load_due([1, 0, 7], 100.0, 1) == {0: ["b"], 1: [odd], 7: []}
    await store.commit({}, {}, {}, {"b": (0, None), "a": (0, 200.0)})
    assert (await store.load_due([0], 150.0, 10))[0] == []
    assert (await store.load_due([0], 250.0, 10))[0] == ["a"]

    # The input partitions' event-time clocks.
    assert await store.load_clocks([0, 3]) == {}
    await store.commit({}, {}, {}, None, None, {0: 100.0, 3: 50.5})
    await store.commit({}, {}, {}, None, None, {3: 60.25})
    assert await store.load_clocks([0, 3, 7]) == {0: 100.0, 3: 60.25}
    assert await store.load_clocks([]) == {}

    # Fencing: a commit presenting an epoch that another claim has moved is refused whole.
    first = await store.claim([5, 6])
    await store.commit({"z": (5, b"1")}, {"clickstream:5": 1}, {}, {"z": (5, 10.0)}, first)
    second = await store.claim([6])  # another worker takes partition 6
    assert second[6] > first[6] and (await store.claim([])) == {}
    with pytest.raises(Fenced, match=r"^partitions 6 \(epoch \d+, now \d+\) were claimed"):
        await store.commit(
            {"z": (5, b"2"), "y": (6, b"2")},
            {"clickstream:5": 2, "clickstream:6": 2},
            {},
            {"z": (5, 1.0)},
            first,
        )
    assert await store.load_customers({"z": 5, "y": 6}) == {"z": b"1"}
    assert (await store.load_offsets([5]))["clickstream:5"] == 1
    assert (await store.load_due([5], 5.0, 10))[5] == []
    await store.commit(
        {"z": (5, b"3")}, {"clickstream:6": 7}, {}, None, {6: second[6], 5: first[5]}
    )
    assert await store.load_customers({"z": 5}) == {"z": b"3"}
    # ...and so is a read: the old owner must not see what the new one wrote.
    with pytest.raises(Fenced, match=r"^partitions 6 \(epoch \d+, now \d+\) were claimed"):
        await store.load_customers({"y": 6}, first)
    assert await store.load_customers({"z": 5}, {6: second[6], 5: first[5]}) == {"z": b"3"}
    assert await store.load_customers({}, first) == {}  # nothing asked: nothing to refuse


async def check_models_contract(store: StateStore) -> None:
    """Models a worker learning by itself checkpoints (not on Redis Cluster: a learner
    writes them there), fenced as the rest of its commit."""
    assert await store.load_models() == {}
    await store.commit({"a": (0, b"1")}, {"clickstream:0": 1}, {"core": b"m1", "affinity:X": b"r1"})
    await store.commit({}, {}, {"core": b"m2", "affinity:Y": b"r2"})
    assert await store.load_models() == {"core": b"m2", "affinity:X": b"r1", "affinity:Y": b"r2"}
    first = await store.claim([5])
    await store.claim([5])
    with pytest.raises(Fenced, match="5"):
        await store.commit({}, {"clickstream:5": 2}, {"m": b"x"}, None, first)
    assert "m" not in await store.load_models()


async def check_journal_contract(store: StateStore, entries: Callable[[int], list[bytes]]) -> None:
    """A checkpoint's journal entries are written with it, one per input partition (also for
    a partition with no offsets in the commit: its windows closed by the others' time); the
    models' version starts at 0."""
    assert await store.models_version() == 0
    await store.commit({"j": (7, b"1")}, {"clickstream:7": 5}, {}, journal={7: b'[["view"]]'})
    await store.commit(
        {"j": (7, b"2")}, {"clickstream:2": 9}, {}, journal={7: b'[["settle"]]', 2: b"[]"}
    )
    assert entries(7) == [b'[["view"]]', b'[["settle"]]']
    assert entries(2) == [b"[]"]
    assert await store.load_offsets([2, 7]) == {"clickstream:7": 5, "clickstream:2": 9}
