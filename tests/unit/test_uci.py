"""The UCI Online Retail adapter: real orders and cancellations in, valid events out."""

from __future__ import annotations

from pathlib import Path

import pytest

from app import codec
from app.catalog import Catalog
from app.datasets import uci
from app.decode import validate_object
from app.engine import DecisionEngine
from app.replay import Replayer

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "tests" / "data" / "uci_online_retail_sample.csv"
FULL = ROOT.parent / "shared" / "datasets" / "uci_online_retail" / "online_retail.csv.gz"


def test_sample_converts_to_valid_events() -> None:
    stats = uci.UciStats()
    events = uci.convert(uci.read_rows(SAMPLE), stats)
    assert stats.rows == 1200
    assert stats.orders + stats.returns == len(events)
    assert stats.returns == 3  # 10 cancelled lines on 3 cancellation invoices
    assert stats.skipped["no customer"] == 1
    assert stats.skipped["not a product"] >= 4
    for event in events:
        validate_object(event, "orders")
    assert [e["ts"] for e in events] == sorted(e["ts"] for e in events)
    first = events[0]
    assert first["type"] == "order_placed" and first["customer_id"] == "17850"
    assert first["ts"] == "2010-12-01T08:26:00.000Z"  # GMT in December
    returned = next(e for e in events if e["type"] == "order_returned")
    assert returned["order_id"].startswith("C") and all(i["qty"] > 0 for i in returned["items"])


def test_summer_times_are_converted_from_uk_local_time() -> None:
    row = {
        "InvoiceNo": "999",
        "StockCode": "85123A",
        "Description": "X",
        "Quantity": "2",
        "InvoiceDate": "2011-07-01 10:00:00",
        "UnitPrice": "2.55",
        "CustomerID": "1.0",
        "Country": "United Kingdom",
    }
    (event,) = uci.convert([row], uci.UciStats())
    assert event["ts"] == "2011-07-01T09:00:00.000Z"  # BST is UTC+1
    assert event["total"] == 5.1 and event["customer_id"] == "1"


def test_sample_catalog_and_replay(tmp_path: Path) -> None:
    specs = uci.catalog(uci.read_rows(SAMPLE))
    assert specs and all(abs(s.unit_cost - s.price * 0.55) < 0.011 for s in specs)
    catalog = Catalog.from_specs(specs)
    events = uci.convert(uci.read_rows(SAMPLE), uci.UciStats())
    out, dead = [], []
    stats = Replayer(DecisionEngine(catalog)).run(
        (codec.dumps(e) for e in events), out.append, dead.append
    )
    assert stats.events == len(events) and not dead and out


def test_the_whole_dataset_replays_without_dead_letters() -> None:
    """The real thing: 541,909 rows of orders and cancellations (beside the project, in
    ../shared, on CI machines)."""
    if not FULL.is_file():
        pytest.fail(f"{FULL} is missing: the UCI dataset is expected beside the project")
    stats = uci.UciStats()
    events = uci.convert(uci.read_rows(FULL), stats)
    assert stats.rows == 541_909 and len(events) > 20_000
    catalog = Catalog.from_specs(uci.catalog(uci.read_rows(FULL)))
    dead: list[bytes] = []
    replay = Replayer(DecisionEngine(catalog)).run(
        (codec.dumps(e) for e in events), lambda _: None, dead.append
    )
    assert dead == [] and replay.events == len(events)
