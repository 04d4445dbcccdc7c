"""tact report: its statistics on known answers, its accounting on hand-made data, and its
estimate against the simulator's ground truth."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import numpy as np
import pytest

from app import codec
from app.cli import main
from app.policy import load_policy
from app.report import analysis
from app.report.data import load
from app.report.stats import cuped, difference, kaplan_meier, wilson
from app.report.verdict import verdict
from app.sample import demo_catalog
from app.simulate.run import simulate
from app.simulate.world import WorldSpec


def test_kaplan_meier_matches_the_textbook_example() -> None:
    curve = kaplan_meier([1, 2, 2, 3, 4, 5], [True, True, False, True, False, True])
    assert curve.times == [1, 2, 3, 5]
    assert curve.survival == pytest.approx([5 / 6, 2 / 3, 4 / 9, 0.0])
    assert curve.at(0.5)[0] == 1.0 and curve.at(2.5)[0] == pytest.approx(2 / 3)
    assert curve.events == 4 and curve.n == 6


def test_bootstrap_interval_covers_a_known_difference() -> None:
    rng = np.random.default_rng(1)
    treated = rng.normal(12.0, 5.0, 800)
    control = rng.normal(10.0, 5.0, 800)
    e = difference(treated.tolist(), control.tolist(), seed=2)
    assert e is not None
    assert e.low < 2.0 < e.high and e.low > 0  # the interval excludes 0
    same = difference(control.tolist(), rng.normal(10.0, 5.0, 800).tolist(), seed=2)
    assert same is not None and same.low < 0 < same.high
    assert difference([], [1.0]) is None


def test_cuped_removes_what_the_pre_period_explains() -> None:
    rng = np.random.default_rng(3)
    pre_t, pre_c = rng.gamma(2.0, 20.0, 600), rng.gamma(2.0, 20.0, 600)
    y_t = pre_t + rng.normal(0, 5, 600) + 3.0
    y_c = pre_c + rng.normal(0, 5, 600)
    raw = difference(y_t.tolist(), y_c.tolist())
    t_adj, c_adj, removed = cuped(y_t.tolist(), pre_t.tolist(), y_c.tolist(), pre_c.tolist())
    adjusted = difference(t_adj, c_adj)
    assert raw is not None and adjusted is not None
    assert removed > 0.8
    assert adjusted.high - adjusted.low < 0.5 * (raw.high - raw.low)
    assert adjusted.low < 3.0 < adjusted.high


def test_wilson_interval() -> None:
    p, low, high = wilson(30, 100)
    assert (
        p == 0.3
        and low == pytest.approx(0.2189, abs=1e-3)
        and high == pytest.approx(0.3958, abs=1e-3)
    )
    assert wilson(0, 0) == (0.0, 0.0, 0.0)


def _lines(records: list[dict[str, Any]]) -> list[bytes]:
    return [codec.dumps(r) + b"\n" for r in records]


def _action(cid: str, arm: str, ts: str = "2026-11-02T10:00:00Z", **extra: Any) -> dict[str, Any]:
    return {
        "action_id": f"{abs(hash((cid, ts))):032x}"[:32],
        "customer_id": cid,
        "ts": ts,
        "play": "expand",
        "channel": "onsite_cart",
        "frame": "completeness",
        "holdout": arm == "held_out",
        "experiments": {"holdout": arm},
        "reasons": ["moment:cart", "seg:new", "seg:risk:low"],
        **extra,
    }


def _order(cid: str, n: int, sku: str, price: float, ts: str) -> dict[str, Any]:
    return {
        "event_id": f"{cid}-o{n}",
        "type": "order_placed",
        "customer_id": cid,
        "ts": ts,
        "order_id": f"{cid}-o{n}",
        "items": [{"sku": sku, "qty": 1, "price": price}],
        "total": price,
    }


def test_profit_per_customer_counts_margin_returns_and_channel_costs() -> None:
    catalog = demo_catalog()
    shoe = catalog.get("RUN-SHOE-01")
    assert shoe is not None
    actions, outcomes, events = [], [], []
    for i in range(20):
        for arm in ("treated", "held_out"):
            cid = f"{arm}-{i}"
            actions.append(_action(cid, arm))
            cost = 0.15 if arm == "treated" else 0.0
            outcomes.append(
                {"customer_id": cid, "channel_cost": cost, "delivered": arm == "treated"}
            )
            events.append(_order(cid, 1, "RUN-SHOE-01", shoe.price, "2026-11-02T11:00:00Z"))
            if arm == "treated":  # the treated buy twice
                events.append(_order(cid, 2, "RUN-SHOE-01", shoe.price, "2026-11-12T11:00:00Z"))
            if i < 5:  # a quarter of each arm returns a shoe
                events.append(
                    {
                        "event_id": f"{cid}-r",
                        "type": "order_returned",
                        "customer_id": cid,
                        "ts": "2026-11-20T11:00:00Z",
                        "order_id": f"{cid}-o1",
                        "items": [{"sku": "RUN-SHOE-01", "qty": 1}],
                    }
                )
    events.append({"not": "an event"})
    data = load(_lines(actions), _lines(outcomes), _lines(events), catalog, 0.4, 6.0)
    assert data.skipped["events"] == 1
    treated = data.customers["treated-0"]
    assert treated.margin == pytest.approx(2 * shoe.margin)
    assert treated.return_loss == pytest.approx(shoe.margin + 6.0)
    assert treated.channel_cost == pytest.approx(0.15)
    figures = analysis.overall(data)
    e = figures["incremental_profit_per_customer"]
    assert e["value"] == pytest.approx(shoe.margin - 0.15)  # one more order, less the cost
    assert figures["treated"] == figures["held_out"] == 20
    velocity = analysis.velocity(data)
    assert velocity["treated"]["second_purchases"] == 20
    assert velocity["held_out"]["second_purchases"] == 0
    rates = analysis.rates(data)
    assert rates["treated"]["return_rate"][0] == pytest.approx(5 / 40)
    assert rates["held_out"]["return_rate"][0] == pytest.approx(5 / 20)


def test_the_estimate_agrees_with_the_simulators_ground_truth(tmp_path: Path) -> None:
    """Half the customers held out: the report's treated-vs-holdout estimate must cover the
    true effect per customer, which the simulator knows from running everyone treated and
    no one treated on the same customers."""
    base = load_policy(None)
    world = WorldSpec(customers=2000)
    split = base.model_copy(update={"holdout": base.holdout.model_copy(update={"share": 0.5})})
    simulate(world, demo_catalog(), split, seed=5, policies=("tact",), out=tmp_path)
    everyone = base.model_copy(update={"holdout": base.holdout.model_copy(update={"share": 0.0})})
    full = simulate(world, demo_catalog(), everyone, seed=5, policies=("tact", "never"))
    truth = (full["tact"].profit - full["never"].profit) / world.customers

    def read(name: str) -> list[bytes]:
        return (tmp_path / f"{name}.jsonl").read_bytes().splitlines(keepends=True)

    data = load(read("actions"), read("outcomes"), read("events"), demo_catalog(), 0.4, 6.0)
    e = analysis.overall(data)["incremental_profit_per_customer"]
    assert e["low"] < truth < e["high"], (truth, e)
    attributed = analysis.overall(data)["attributed_profit_per_customer"]
    assert attributed > e["high"]  # attribution claims more than the holdout shows


def test_report_command_writes_html_and_json(tmp_path: Path, capsys: Any) -> None:
    sim = tmp_path / "sim"
    simulate(
        WorldSpec(customers=400, days=30), demo_catalog(), load_policy(None), 1, ("tact",), sim
    )
    out = tmp_path / "report"
    code = main(
        [
            "report",
            "--actions", str(sim / "actions.jsonl"),
            "--outcomes", str(sim / "outcomes.jsonl"),
            "--events", str(sim / "events.jsonl"),
            "--catalog", str(sim / "catalog.jsonl"),
            "--out", str(out),
        ]
    )  # fmt: skip
    assert code == 0
    printed = capsys.readouterr().out
    assert "incremental profit per customer" in printed and "report.html" in printed
    assert "\n  verdict: tact" in printed
    page = (out / "report.html").read_text()
    for section in (
        "Incremental profit per customer",
        "Second purchase velocity",
        "cannibalisation",
        "Persuasion frames",
    ):
        assert section in page
    assert page.count("<svg") >= 6 and "http" not in page.replace("http://www.w3.org", "")
    figures = json.loads((out / "report.json").read_text())
    assert figures["customers"] > 300 and figures["frames"]
    for row in figures["frames"]:  # observed rates, not the posterior's mean
        assert row["rate"] == row["conversions"] / row["offers"]
        assert row["low"] <= row["rate"] <= row["high"]  # 0 of n: [0, upper]
    assert figures["verdict"]["overall"]["kind"] in ("added", "lost", "undecided")
    assert figures["verdict"]["overall"]["text"] in page
    accept = figures["calibration"]["accept"]
    assert accept["n"] > 500 and 0 < accept["observed"] < accept["mean_predicted"] < 0.5
    assert len(accept["bins"]) == 10 and sum(b["count"] for b in accept["bins"]) == accept["n"]
    assert 0.5 < accept["auc"] < 1 and 0 < accept["ece"] < 0.2
    assert figures["calibration"]["returns"]["return_windows"]["closed"] == 0  # 30 days < 30 + 3
    assert (
        re.search(r"\n  calibration  accept: Brier 0\.\d{3}, ECE", printed)
        and "uplift (" in printed
    )
    assert "Calibration of the engine's predictions" in page and "by decile of P(accept)" in page
    for chart in re.findall(r"<svg.*?</svg>", page, re.S):
        ElementTree.fromstring(chart)  # well-formed
    # estimates are labelled with what they are, and their figures printed beside the marks
    assert "incremental profit per customer, treated - held out (95% interval)</text>" in page
    assert "conversion rate of delivered offers, observed" in page
    assert re.search(r">[+-][\d,]+\.\d\d \[[+-][\d,]+\.\d\d, [+-][\d,]+\.\d\d\]</text>", page)
    assert re.search(r">\d+\.\d% \[\d+\.\d%, \d+\.\d%\]</text>", page)


@pytest.fixture(scope="module")
def small_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One simulated run (200 customers, 20 days) of the engine's files, which the tests
    below only read: each rewrites its own copy of the outcomes."""
    sim = tmp_path_factory.mktemp("sim")
    simulate(
        WorldSpec(customers=200, days=20), demo_catalog(), load_policy(None), 2, ("tact",), sim
    )
    return sim


def _report_with(tmp_path: Path, sim: Path, rewrite: Callable[[dict[str, Any]], None]) -> Path:
    """The report of the run in `sim`, its outcomes first rewritten by `rewrite` (in place)."""
    outcomes = tmp_path / "rewritten-outcomes.jsonl"
    with outcomes.open("wb") as file:
        for line in (sim / "outcomes.jsonl").read_bytes().splitlines():
            record = json.loads(line)
            rewrite(record)
            file.write(codec.dumps(record) + b"\n")
    return _report(tmp_path, sim, outcomes)


def _report(tmp_path: Path, sim: Path, outcomes: Path) -> Path:
    """`tact report` of the run in `sim` with these outcomes; returns its directory."""
    out = tmp_path / "report"
    code = main(
        [
            "report",
            "--actions", str(sim / "actions.jsonl"),
            "--outcomes", str(outcomes),
            "--events", str(sim / "events.jsonl"),
            "--out", str(out),
        ]
    )  # fmt: skip
    assert code == 0
    return out


def test_report_skips_outcomes_written_before_predictions(
    tmp_path: Path, small_run: Path, capsys: Any
) -> None:
    def older(record: dict[str, Any]) -> None:
        for key in ("predicted_accept", "predicted_organic", "predicted_return"):
            del record[key]

    out = _report_with(tmp_path, small_run, older)
    assert "calibration  no outcome carries the engine's predictions" in capsys.readouterr().out
    figures = json.loads((out / "report.json").read_text())
    assert figures["calibration"]["accept"] is None and figures["calibration"]["uplift"] is None
    assert figures["calibration"]["outcomes"]["without_predictions"] > 100
    assert "nothing to calibrate" in (out / "report.html").read_text()


def test_report_refuses_missing_inputs(tmp_path: Path, capsys: Any) -> None:
    assert main(["report", "--actions", "x", "--out", str(tmp_path)]) == 2
    assert "--outcomes, --events" in capsys.readouterr().err


def _estimate(value: float, low: float, high: float, treated: int, held: int) -> dict[str, Any]:
    return {"value": value, "low": low, "high": high, "treated_mean": 0.0, "control_mean": 0.0,
            "treated_n": treated, "control_n": held}  # fmt: skip


def test_the_verdict_says_what_tact_added_when_the_interval_excludes_zero() -> None:
    v = verdict(_estimate(6.05, 2.1, 9.9, 900, 100), days=45)
    assert v["kind"] == "added"
    assert v["text"].startswith("tact added 6.05 per customer (95% interval +2.10 to +9.90")
    assert verdict(_estimate(-3.0, -5.0, -1.0, 900, 100), days=45)["kind"] == "lost"


def test_an_undecided_verdict_says_how_much_more_traffic_would_tell() -> None:
    """-23.64 [-79.45, +18.90] on 500 customers, the Actions claiming 6.05: not yet
    distinguishable from zero, and it takes about (2.8 se / 6.05)^2 times the customers."""
    v = verdict(_estimate(-23.64, -79.45, 18.90, 450, 50), days=30, claimed=6.05)
    se = (18.90 + 79.45) / (2 * 1.96)
    factor = (2.8 * se / 6.05) ** 2
    assert v["kind"] == "undecided" and v["resolvable"] == pytest.approx(2.8 * se)
    assert v["more_customers"] == pytest.approx(500 * (factor - 1), abs=1)
    assert v["more_days"] == pytest.approx(30 * (factor - 1))
    assert "not yet distinguishable from zero" in v["text"] and "10% held out" in v["text"]
    assert "what the Actions claim" in v["text"]
    assert verdict(None, days=30)["kind"] == "no_holdout"


def test_a_report_where_nothing_was_delivered_measures_no_increment(
    tmp_path: Path, small_run: Path, capsys: Any
) -> None:
    """A file replay decides but delivers nothing: the report says so, and shows no
    incremental figure as if it had been measured."""
    out = _report_with(tmp_path, small_run, lambda record: record.update(delivered=False))
    printed = capsys.readouterr().out
    assert "no Action was delivered" in printed and "not measured: nothing was delivered" in printed
    figures = json.loads((out / "report.json").read_text())
    assert figures["verdict"]["overall"]["kind"] == "no_delivery"
    page = (out / "report.html").read_text()
    assert "no Action was delivered" in page and "<h2>Incremental profit per customer" not in page


def test_actions_a_lagging_worker_sent_expired_count_as_never_delivered(
    tmp_path: Path, small_run: Path, capsys: Any
) -> None:
    """A backfill read by a worker with no connector: every Action went out already expired
    (reason `stale`) but the engine, told nothing else, recorded its Outcome as delivered. The
    report must not measure an increment from offers nobody saw."""
    actions = tmp_path / "stale-actions.jsonl"
    with actions.open("wb") as file:
        for line in (small_run / "actions.jsonl").read_bytes().splitlines():
            record = json.loads(line)
            record["reasons"] = [*record["reasons"], "stale"]
            file.write(codec.dumps(record) + b"\n")
    out = tmp_path / "report"
    code = main(
        [
            "report",
            "--actions", str(actions),
            "--outcomes", str(small_run / "outcomes.jsonl"),
            "--events", str(small_run / "events.jsonl"),
            "--out", str(out),
        ]
    )  # fmt: skip
    assert code == 0
    figures = json.loads((out / "report.json").read_text())
    assert figures["verdict"]["overall"]["kind"] == "no_delivery"
    assert figures["lines"]["stale"] > 100
    assert "a lagging worker sends its Actions already expired" in capsys.readouterr().out


def test_second_purchase_is_read_at_horizons_the_data_reaches(
    tmp_path: Path, small_run: Path, capsys: Any
) -> None:
    """Twenty days of data: no "by 30/60/90 days" shares read off a curve that ends at 20."""
    out = _report_with(tmp_path, small_run, lambda record: None)
    figures = json.loads((out / "report.json").read_text())
    (horizon,) = figures["velocity"]["treated"]["by_days"]  # the span's end, in whole days
    assert 15 <= int(horizon) <= 20
    printed = capsys.readouterr().out
    assert f"second purchase by {horizon} days" in printed and "30/60/90" not in printed
    assert figures["cannibalisation"]  # the default policy's paid retargeting suppression test
    assert "paid retargeting: its Actions claimed" in printed and "what it really added" in printed


def test_every_held_out_play_has_a_row_even_before_it_can_be_measured() -> None:
    """The policy holds out expand and commit: commit's holdout has drawn nobody yet among
    the few customers chosen for it. It is listed, saying why it has no estimate (it used
    to be left out, as if commit were not held out at all)."""
    from app.report.html import _measured

    catalog = demo_catalog()
    actions, outcomes = [], []
    for i in range(30):
        play = "expand" if i < 20 else "commit"
        arm = "held_out" if play == "expand" and i % 2 else "treated"
        cid = f"c{i}"
        experiments = {"holdout": "treated", f"play_holdout:{play}": arm}
        actions.append(_action(cid, "treated", play=play, experiments=experiments))
        outcomes.append({"customer_id": cid, "channel_cost": 0.0, "delivered": arm == "treated"})
    data = load(_lines(actions), _lines(outcomes), [], catalog, 0.4, 6.0)
    rows = {r["play"]: r for r in analysis.play_holdouts(data)}
    assert set(rows) == {"expand", "commit"}
    assert rows["expand"]["value"] is not None and "note" not in rows["expand"]
    commit = rows["commit"]
    assert commit["value"] is None and commit["treated_n"] == 10 and commit["control_n"] == 0
    assert "nobody held out" in commit["note"]
    html = "".join(_measured({"groups": {}, "play_holdouts": list(rows.values())}))
    assert "commit" in html and "nobody held out" in html


def test_a_report_before_any_window_closed_says_no_outcome_yet(
    tmp_path: Path, small_run: Path, capsys: Any
) -> None:
    """A live run younger than its attribution windows has Actions but no Outcome yet: the
    report says that (not that nothing was delivered) and measures nothing."""
    empty = tmp_path / "no-outcomes.jsonl"
    empty.write_bytes(b"")
    out = _report(tmp_path, small_run, empty)
    printed = capsys.readouterr().out
    assert "no Outcome in this data yet" in printed and "not measured: no Outcome yet" in printed
    assert "no Action was delivered" not in printed
    assert "written before they were recorded" not in printed  # calibration: none yet either
    figures = json.loads((out / "report.json").read_text())
    assert figures["verdict"]["overall"]["kind"] == "no_outcome"
    assert "<h2>Incremental profit per customer" not in (out / "report.html").read_text()
