"""What every StateStore must do; run against the in-memory store (unit) and Redis
(integration)."""

from __future__ import annotations

from app.store import StateStore


async def check_store_contract(store: StateStore) -> None:
    assert await store.load_offsets() == {}
    assert await store.load_customers(["a", "b"]) == {}
    assert await store.load_customers([]) == {}
    assert await store.load_models() == {}

    await store.commit(
        {"a": b'{"n":1}', "b": b"\x00\xffbinary"},
        {"clickstream:0": 10},
        {"core": b"m1", "affinity:X": b"r1"},
    )
    assert await store.load_customers(["a", "b", "c"]) == {"a": b'{"n":1}', "b": b"\x00\xffbinary"}
    assert await store.load_offsets() == {"clickstream:0": 10}

    await store.commit(
        {"a": b'{"n":2}'},
        {"clickstream:0": 12, "orders:3": 4},
        {"core": b"m2", "affinity:Y": b"r2"},
    )
    assert await store.load_models() == {"core": b"m2", "affinity:X": b"r1", "affinity:Y": b"r2"}
    assert await store.load_customers(["a"]) == {"a": b'{"n":2}'}
    assert await store.load_customers(["b"]) == {"b": b"\x00\xffbinary"}
    assert await store.load_offsets() == {"clickstream:0": 12, "orders:3": 4}

    await store.commit({}, {}, {})
    assert await store.load_offsets() == {"clickstream:0": 12, "orders:3": 4}
    odd = "cust:with spaces/and:colons"
    await store.commit({odd: b"x"}, {}, {})
    assert await store.load_customers([odd]) == {odd: b"x"}

    # The due index: per partition, customers whose earliest window has ended.
    assert await store.load_due(0, 1e12, 10) == []
    await store.commit({}, {}, {}, {"a": (0, 100.0), "b": (0, 50.0), odd: (1, 10.0)})
    assert await store.load_due(0, 99.0, 10) == ["b"]
    assert await store.load_due(0, 100.0, 10) == ["b", "a"]
    assert await store.load_due(0, 100.0, 1) == ["b"]
    assert await store.load_due(1, 100.0, 10) == [odd]
    await store.commit({}, {}, {}, {"b": (0, None), "a": (0, 200.0)})
    assert await store.load_due(0, 150.0, 10) == []
    assert await store.load_due(0, 250.0, 10) == ["a"]
