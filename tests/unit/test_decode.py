"""Every way a record can be unusable has its own reason code."""

from __future__ import annotations

import pytest

from app import codec
from app.decode import REASONS, decode_event
from app.errors import BadInput
from tests.samples import event


def reason_of(raw: bytes | None, family: str | None = "clickstream", limit: int = 1 << 20) -> str:
    with pytest.raises(BadInput) as info:
        decode_event(raw, family, limit)  # type: ignore[arg-type]
    assert info.value.reason in (*REASONS, "not_json")
    return info.value.reason


def test_valid_record_decodes() -> None:
    parsed = decode_event(codec.dumps(event("add_to_cart")), "clickstream")
    assert parsed.type == "add_to_cart"


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"{not json", "not_json"),
        (b"", "not_json"),
        (b"\xff\xfe\x00garbage", "not_json"),
        (None, "not_json"),
        (b"[1, 2, 3]", "not_object"),
        (b'"a string"', "not_object"),
        (b"42", "not_object"),
        (b"null", "not_object"),
        (codec.dumps({**event("search"), "type": "teleport"}), "unknown_type"),
        (codec.dumps({k: v for k, v in event("search").items() if k != "type"}), "unknown_type"),
        (codec.dumps({**event("search"), "type": 7}), "unknown_type"),
        (codec.dumps(event("order_placed")), "wrong_topic"),
        (codec.dumps(event("add_to_cart", qty="two")), "schema"),
        (codec.dumps(event("add_to_cart", ts="2026-11-02T10:00:00")), "schema"),
    ],
)
def test_reasons(raw: bytes | None, reason: str) -> None:
    assert reason_of(raw) == reason


def test_too_large_is_checked_before_parsing() -> None:
    big = codec.dumps(event("search", padding="x" * 2000))
    assert reason_of(big, limit=1024) == "too_large"
    assert decode_event(big, "clickstream", max_bytes=len(big)).type == "search"


def test_wrong_topic_both_ways() -> None:
    assert reason_of(codec.dumps(event("page_view")), family="orders") == "wrong_topic"
    assert decode_event(codec.dumps(event("page_view")), None).type == "page_view"


def test_schema_detail_lists_each_field() -> None:
    raw = codec.dumps(event("add_to_cart", qty=0, price=-1))
    with pytest.raises(BadInput) as info:
        decode_event(raw, "clickstream")
    assert "qty:" in info.value.detail
    assert "price:" in info.value.detail


def test_detail_is_capped() -> None:
    raw = codec.dumps(event("order_placed", items=[{"sku": ""}] * 500))
    with pytest.raises(BadInput) as info:
        decode_event(raw, "orders")
    assert len(info.value.detail) <= 1000
