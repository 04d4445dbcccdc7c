"""What a connector's dead-letter log line names."""

from __future__ import annotations

from app import codec
from app.connectors.run import _named


def test_a_dead_letter_log_line_names_the_action_and_customer() -> None:
    value = codec.dumps({"action_id": "a-1", "customer_id": "c-9", "channel": "email"})
    assert _named(value) == "a-1 (customer c-9)"
    bad = b"\xff not json"
    assert _named(bad) == f"(unreadable, {len(bad)} bytes)"
    partial = codec.dumps({"action_id": "a-1"})  # no customer
    assert _named(partial) == f"(unreadable, {len(partial)} bytes)"
