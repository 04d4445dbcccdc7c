"""The worker's pure middle: dedup below the checkpoint, dead letters in place, order kept."""

from __future__ import annotations

from app import codec
from app.engine import DecisionEngine
from app.pipeline import BatchPipeline, DeadLetter, Record
from app.sample import demo_catalog
from tests.samples import event

FAMILIES = {"clickstream": "clickstream", "orders": "orders"}


def pipeline() -> BatchPipeline:
    return BatchPipeline(DecisionEngine(demo_catalog()), FAMILIES, 1 << 20)


def rec(offset: int, value: bytes | None, topic: str = "clickstream", partition: int = 0) -> Record:
    return Record(topic, partition, offset, b"cust-1", value, 1_700_000_000_000)


def cart(n: int, customer: str = "cust-1") -> bytes:
    return codec.dumps(event("add_to_cart", event_id=f"e-{n}", customer_id=customer))


def test_garbage_between_valid_records_is_dead_lettered_in_place() -> None:
    p = pipeline()
    records = [
        rec(0, cart(0)),
        rec(1, b"garbage"),
        rec(2, cart(2)),
        rec(3, b"[]"),
        rec(4, codec.dumps(event("refund"))),
    ]
    prepared = p.prepare(records, {})
    result = p.decide(prepared)
    assert [a.source_event_id for a in result.actions] == ["e-0", "e-2"]
    assert [(d.record.offset, d.reason) for d in result.dead_letters] == [
        (1, "not_json"),
        (3, "not_object"),
        (4, "wrong_topic"),
    ]
    assert prepared.offsets == {"clickstream:0": 5}
    assert result.touched == {"cust-1"}


def test_records_below_the_checkpoint_are_skipped() -> None:
    p = pipeline()
    records = [rec(i, cart(i)) for i in range(5)]
    prepared = p.prepare(records, {"clickstream:0": 3, "clickstream:1": 99})
    assert prepared.redelivered == 3
    assert [r.offset for r, _ in prepared.items] == [3, 4]
    assert prepared.offsets == {"clickstream:0": 5}


def test_a_batch_of_redelivered_records_never_moves_the_checkpoint_back() -> None:
    """After a restart the first batches lie below the checkpoint; writing their offsets
    would let the next batch re-apply records the state already holds."""
    p = pipeline()
    prepared = p.prepare([rec(i, cart(i)) for i in range(4)], {"clickstream:0": 10})
    assert prepared.items == []
    assert prepared.offsets.get("clickstream:0", 10) >= 10
    mixed = p.prepare([rec(8, cart(8)), rec(9, cart(9)), rec(10, cart(10))], {"clickstream:0": 10})
    assert mixed.offsets == {"clickstream:0": 11}


def test_offsets_are_tracked_per_partition() -> None:
    p = pipeline()
    records = [
        rec(7, cart(1), partition=1),
        rec(3, cart(2), partition=0),
        rec(9, cart(3), topic="orders", partition=1),
    ]
    assert p.prepare(records, {}).offsets == {
        "clickstream:1": 8,
        "clickstream:0": 4,
        "orders:1": 10,
    }


def test_dead_letter_headers_carry_reason_and_origin() -> None:
    letter = DeadLetter(rec(12, b"x", partition=2), "not_json", "bad")
    headers = dict(letter.headers())
    assert headers["tact.dlq.reason"] == b"not_json"
    assert headers["tact.dlq.detail"] == b"bad"
    assert headers["tact.dlq.topic"] == b"clickstream"
    assert headers["tact.dlq.partition"] == b"2"
    assert headers["tact.dlq.offset"] == b"12"
    assert headers["tact.dlq.timestamp"] == b"1700000000000"


def test_engine_defect_becomes_a_dead_letter_and_the_batch_goes_on() -> None:
    class Broken(DecisionEngine):
        def process_event(self, e, source=None):  # type: ignore[no-untyped-def]
            if e.event_id == "e-1":
                raise RuntimeError("boom")
            return super().process_event(e, source)

    p = BatchPipeline(Broken(demo_catalog()), FAMILIES, 1 << 20)
    result = p.decide(p.prepare([rec(0, cart(0)), rec(1, cart(1)), rec(2, cart(2))], {}))
    assert [a.source_event_id for a in result.actions] == ["e-0", "e-2"]
    assert [(d.reason, d.record.offset) for d in result.dead_letters] == [("internal_error", 1)]
    assert "boom" in result.dead_letters[0].detail


def test_customers_to_load_are_the_valid_events_customers() -> None:
    p = pipeline()
    prepared = p.prepare([rec(0, cart(0, "a")), rec(1, b"x"), rec(2, cart(2, "b"))], {})
    assert prepared.customer_ids() == {"a", "b"}


def test_state_changed_before_an_engine_failure_is_still_checkpointed() -> None:
    """The engine may fail after updating a customer's state: that state is in its cache, so
    it is checkpointed too (cache and store must never disagree)."""

    class FailsAfterUpdate(DecisionEngine):
        def process_event(self, e, lag_s=None):  # type: ignore[no-untyped-def]
            super().process_event(e, lag_s)
            raise RuntimeError("after the update")

    p = BatchPipeline(FailsAfterUpdate(demo_catalog()), FAMILIES, 1 << 20)
    result = p.decide(p.prepare([rec(0, cart(0, "solo"))], {}))
    assert [d.reason for d in result.dead_letters] == ["internal_error"]
    assert result.touched == {"solo"}


def test_an_event_dated_in_the_future_is_a_dead_letter_and_closes_no_window() -> None:
    """One event dated 2099 must not move the watermark: every window in memory would close
    at once as not converted. Within the allowed skew, a clock a little ahead is fine."""
    p = pipeline()
    now = 1_793_610_900.0  # 2026-11-02T09:15:00Z, the samples' time
    soon = event("add_to_cart", event_id="e-soon", customer_id="cust-2")
    soon["ts"] = "2026-11-02T09:17:00Z"  # 120 s after `now`
    later = event("add_to_cart", event_id="e-2099", customer_id="cust-3")
    later["ts"] = "2099-01-01T00:00:00Z"
    records = [rec(0, cart(0)), rec(1, codec.dumps(later)), rec(2, codec.dumps(soon))]
    result = p.decide(p.prepare(records, {}), now=now)
    assert [(d.record.offset, d.reason) for d in result.dead_letters] == [(1, "future_timestamp")]
    assert "TACT_MAX_FUTURE_SKEW_S" in result.dead_letters[0].detail
    assert [a.source_event_id for a in result.actions] == ["e-0", "e-soon"]
    assert p.engine.models.watermark < now + 300


def test_a_record_on_another_customers_partition_is_a_misrouted_dead_letter() -> None:
    """With 6 partitions per input, a customer's record must sit where murmur2 of its
    customer_id puts it; elsewhere another worker owns the customer."""
    from app.partitioning import partition_of

    p = BatchPipeline(
        DecisionEngine(demo_catalog()),
        FAMILIES,
        1 << 20,
        partitions={"clickstream": 6, "orders": 6},
    )
    home = partition_of("cust-1", 6)
    records = [
        rec(0, cart(0), partition=home),
        rec(0, cart(1), partition=(home + 1) % 6),
        rec(1, cart(2), partition=home),
    ]
    result = p.decide(p.prepare(records, {}))
    assert [a.source_event_id for a in result.actions] == ["e-0", "e-2"]
    assert [(d.record.partition, d.reason) for d in result.dead_letters] == [
        ((home + 1) % 6, "misrouted")
    ]
    assert "murmur2" in result.dead_letters[0].detail
