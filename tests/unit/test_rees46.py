"""The REES46 adapter, on rows written here (the dataset itself is never copied in)."""

from __future__ import annotations

from pathlib import Path

from app.datasets import rees46
from app.decode import validate_object

HEAD = "event_time,event_type,product_id,category_id,category_code,brand,price,user_id,user_session"
ROWS = [
    "2019-10-01 00:00:00 UTC,view,44600062,21,,shiseido,35.79,541312140,s1",
    "2019-10-01 00:00:04 UTC,view,1004237,20,electronics.smartphone,apple,1081.98,535871217,s2",
    "2019-10-01 00:01:00 UTC,cart,1004237,20,electronics.smartphone,apple,1081.98,535871217,s2",
    "2019-10-01 00:02:00 UTC,purchase,1004237,20,electronics.smartphone,apple,1081.98,535871217,s2",
    "2019-10-01 00:02:00 UTC,purchase,44600062,21,,shiseido,35.79,535871217,s2",
    "2019-10-01 00:03:00 UTC,remove_from_cart,1004237,20,,,1081.98,535871217,s2",
    "2019-10-01 00:03:30 UTC,view,,20,,,10.00,535871217,s2",
    "2019-10-01 00:04:00 UTC,view,1004237,20,,,n/a,535871217,s2",
]


def rows(tmp_path: Path) -> Path:
    path = tmp_path / "sample.csv"
    path.write_text("\n".join([HEAD, *ROWS]) + "\n")
    return path


def test_rows_become_valid_events_and_purchases_become_orders(tmp_path: Path) -> None:
    stats = rees46.Rees46Stats()
    events = rees46.convert(rees46.read_rows(rows(tmp_path)), stats)
    assert [e["type"] for e in events] == ["page_view", "page_view", "add_to_cart", "order_placed"]
    order = events[-1]
    assert order["customer_id"] == "r535871217" and order["session_id"] == "s2"
    assert [i["sku"] for i in order["items"]] == ["1004237", "44600062"]
    assert order["total"] == round(1081.98 + 35.79, 2) and order["ts"] == "2019-10-01T00:02:00.000Z"
    for event in events:
        validate_object(event)
    assert stats.rows == 8 and stats.by_type["order_placed"] == 1
    assert stats.skipped == {
        "unknown event type": 1,
        "no user or product": 1,
        "price is not a number": 1,
    }


def test_the_catalog_assumes_a_margin(tmp_path: Path) -> None:
    specs = {s.sku: s for s in rees46.catalog(rees46.read_rows(rows(tmp_path)), margin=0.25)}
    phone = specs["1004237"]
    assert phone.price == 1081.98 and phone.unit_cost == round(1081.98 * 0.75, 2)
    assert phone.category == "electronics" and phone.title == "apple smartphone"
    assert specs["44600062"].category == "uncategorised"
