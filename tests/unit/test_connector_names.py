"""What a connector's dead-letter log line names."""

from __future__ import annotations

from app.connectors.run import _named


def test_a_dead_letter_log_line_names_the_action_and_customer() -> None:
    assert _named(b"c-9", {"action_id": "a-1", "reason": "HTTP 401"}) == "a-1 (customer c-9)"
    # a record that is not an Action has no id; a keyless one no customer
    assert _named(None, {"reason": "not_an_action"}) == "(not an Action) (customer unknown)"
