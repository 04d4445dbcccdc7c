"""`tact policy matrix`: every segment through the policy's rules, segments treated alike in a
row, what the rules close and cap named with the rule."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from app.policy import load_policy
from app.policy_matrix import html, matrix, text

TACT = Path(sys.executable).with_name("tact")


def test_every_segment_is_in_exactly_one_row_with_the_rules_that_apply_to_it() -> None:
    rows = matrix(load_policy())
    members = [tuple(sorted(m.items())) for row in rows for m in row.members]
    assert len(members) == len(set(members)) == 2 * 3 * 3 * 2 * 2 * 3
    assert rows[0].rules == ()  # the segments no rule touches come first
    for row in rows:
        for m in row.members:
            assert ("high_return_risk" in row.rules) == (m["risk"] == "high")
            assert ("thin_margin" in row.rules) == (m["margin"] == "thin")
            assert ("new_customer_gentle" in row.rules) == (m["customer"] == "new")


def test_a_row_says_what_its_rules_close_and_cap() -> None:
    policy = load_policy()
    shown = text(policy)
    risky = [r for r in matrix(policy) if r.rules == ("high_return_risk",)]
    assert len(risky) == 1 and risky[0].who().startswith("returning; return risk high")
    block = shown.split(risky[0].who())[1].split("\n\n")[0]
    assert "expand up to low (high_return_risk)" in block
    assert "closed: paid_retargeting (high_return_risk) at browse" in block
    assert "no upgrade offers (high_return_risk)" in block
    assert "global holdout 5%" in shown and "consent required before email, sms" in shown
    assert "after complaint: email 90 days" in shown
    page = html(policy)
    assert page.count("<tr><td>") == len(matrix(policy))
    assert "<s>paid_retargeting (high_return_risk)</s>" in page


def test_the_command_prints_it_and_writes_the_page(tmp_path: Path) -> None:
    out = tmp_path / "matrix.html"
    done = subprocess.run(
        [str(TACT), "policy", "matrix", "--html", str(out)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("Cross-sell policy matrix: default-")
    assert out.read_text().startswith("<!doctype html>")
