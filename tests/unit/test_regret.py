"""benchmarks.regret: tact's decision moments valued by a reference, as it runs."""

from __future__ import annotations

from typing import Any

import pytest

from benchmarks import regret


def test_every_decision_moment_is_valued_and_held_out_ones_earn_nothing(capsys: Any) -> None:
    assert (
        regret.main(["--world", "default", "--customers", "200", "--by", "did", "--rows", "50"])
        == 0
    )
    out = capsys.readouterr().out.splitlines()
    head = out[0]
    assert head.startswith("decision moments valued by the traits reference: tact's choices")
    rows = {line.split("  ")[0].strip(): line.split() for line in out[2:]}
    held = [r for name, r in rows.items() if name.startswith("holdout:")]
    assert held, "the global and play holdouts hold some moments back"
    for r in held:  # ... nothing is made there: tact's value 0, the reference's not
        assert r[-4] == "0" and float(r[-3].replace(",", "")) > 0
    assert any(name.startswith(("self", "accessories")) for name in rows)  # relations made


def test_unknown_row_keys_are_refused(capsys: Any) -> None:
    with pytest.raises(SystemExit):
        regret.main(["--by", "moment,colour"])
    assert "--by: choose from moment, did, best, intensity, channel" in capsys.readouterr().err
