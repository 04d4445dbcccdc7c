"""The calibration section of tact report: its scores against hand-computed values, its
verdicts on calibrated and miscalibrated forecasts, uplift buckets against a planted uplift,
and which outcomes it counts."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from app import codec
from app.report.calibration import (
    Bin,
    equal_count_bins,
    expected_calibration_error,
    reliability,
    section,
    window_ran,
)
from app.report.stats import auc, brier, equal_parts, rate_difference, spearman
from app.report.uplift import Arm, uplift

P = [0.1, 0.2, 0.3, 0.4, 0.6, 0.7, 0.8, 0.9]
Y = [False, False, True, False, True, False, True, True]


def test_scores_match_hand_computed_values() -> None:
    # (0.01 + 0.04 + 0.49 + 0.16 + 0.16 + 0.49 + 0.04 + 0.01) / 8
    assert brier(P, Y) == pytest.approx(0.175)
    # positives 0.3, 0.6, 0.8, 0.9 beat 2, 3, 4 and 4 of the 4 negatives
    assert auc(P, Y) == pytest.approx(13 / 16)
    assert auc([0.5, 0.5], [True, False]) == pytest.approx(0.5)  # a tie counts a half
    assert auc([0.2, 0.4], [True, True]) is None
    bins = equal_count_bins(P, Y, 4)
    assert [b.count for b in bins] == [2, 2, 2, 2]
    assert [b.predicted for b in bins] == pytest.approx([0.15, 0.35, 0.65, 0.85])
    assert [b.observed for b in bins] == [0.0, 0.5, 0.5, 1.0]
    assert expected_calibration_error(bins) == pytest.approx(0.15)
    # bins weigh by their counts: 30 outcomes off by 0.1, 10 off by 0.3
    uneven = [Bin(30, 0.2, 0.1, 0.0, 0.0), Bin(10, 0.5, 0.8, 0.0, 0.0)]
    assert expected_calibration_error(uneven) == pytest.approx((30 * 0.1 + 10 * 0.3) / 40)
    # the order of the input does not matter
    shuffled = equal_count_bins(P[::-1], Y[::-1], 4)
    assert [b.predicted for b in shuffled] == pytest.approx([0.15, 0.35, 0.65, 0.85])
    assert [len(p) for p in equal_parts(list(range(10)), 3)] == [4, 3, 3]
    assert spearman([1, 2, 3, 4], [10, 30, 20, 40]) == pytest.approx(0.8)


def test_newcombe_interval_of_a_difference_of_rates() -> None:
    # Newcombe (1998), example (a): 56/70 - 48/80, method 10
    value, low, high = rate_difference(56, 70, 48, 80)
    assert value == pytest.approx(0.2)
    assert low == pytest.approx(0.0524, abs=1e-4) and high == pytest.approx(0.3339, abs=1e-4)


def test_uplift_interval_is_not_sure_of_a_held_out_rate_of_zero() -> None:
    """0 conversions in 200 held-out outcomes: every bootstrap resample has 0 too, but the
    rate could well be 1%: the interval of the uplift must reach that far."""
    treated, held_out = Arm(), Arm()
    for i in range(2000):
        treated.add(0.01, i % 100 == 0, f"t{i}")  # 1%
    for i in range(200):
        held_out.add(0.01, False, f"h{i}")
    o = uplift(treated, held_out)
    assert o is not None
    assert o["overall"]["observed"] == pytest.approx(0.01)
    assert o["overall"]["low"] < 0.0  # 1% against an unknown rate below ~1.9%
    assert o["overall"]["low"] == pytest.approx(rate_difference(20, 2000, 0, 200)[1])


def test_uplift_intervals_count_customers_not_outcomes() -> None:
    """The holdout assigns customers: 20 held-out customers with 40 outcomes each are not
    800 independent draws, and the interval must be wider for it."""
    rng = np.random.default_rng(3)
    treated, apart, clustered = Arm(), Arm(), Arm()
    for i in range(4000):
        treated.add(rng.uniform(0, 0.2), bool(rng.random() < 0.2), f"t{i}")
    for customer in range(20):
        buys = customer < 4  # a fifth of the customers buy every time, the rest never
        for j in range(40):
            u = rng.uniform(0, 0.2)
            apart.add(u, buys, f"c{customer}-{j}")
            clustered.add(u, buys, f"c{customer}")
    wide, narrow = uplift(treated, clustered), uplift(treated, apart)
    assert wide is not None and narrow is not None
    assert wide["overall"]["observed"] == narrow["overall"]["observed"]  # same outcomes
    assert wide["overall"]["observed"] == pytest.approx(0.0, abs=0.02)
    assert wide["customers"] == {"treated": 4000, "held_out": 20}
    width = wide["overall"]["high"] - wide["overall"]["low"]
    assert width > 2.5 * (narrow["overall"]["high"] - narrow["overall"]["low"])
    assert width == pytest.approx(2 * 1.96 * (0.2 * 0.8 / 20) ** 0.5, rel=0.25)


def test_calibrated_forecasts_score_near_zero_and_miscalibrated_ones_do_not() -> None:
    rng = np.random.default_rng(7)
    p = rng.uniform(0.0, 0.5, 20_000)
    calibrated = (rng.random(p.size) < p).tolist()
    halved = (rng.random(p.size) < p / 2).tolist()  # the forecasts are twice the truth
    good = reliability(p.tolist(), calibrated)
    bad = reliability(p.tolist(), halved)
    assert good is not None and bad is not None
    assert good["binning"] == "deciles" and len(good["bins"]) == 10
    assert good["ece"] < 0.01
    assert bad["ece"] == pytest.approx(0.125, abs=0.01)  # mean |p - p/2| for p ~ U(0, 0.5)
    assert good["brier"] < good["brier_base_rate"]
    covered = sum(b["low"] <= b["predicted"] <= b["high"] for b in good["bins"])
    assert covered >= 8
    assert all(b["high"] < b["predicted"] for b in bad["bins"][3:])
    # both rank alike: AUC is about ordering, not calibration
    assert good["auc"] > 0.6 and bad["auc"] > 0.6
    assert reliability(p[:29].tolist(), calibrated[:29]) is None
    few = reliability(p[:100].tolist(), calibrated[:100])
    assert few is not None and few["binning"] == "quintiles" and len(few["bins"]) == 5


def _outcome(
    play: str = "expand",
    accept: float | None = 0.1,
    organic: float | None = 0.02,
    returns: float | None = 0.1,
    *,
    holdout: bool = False,
    converted: bool = False,
    status: str = "closed",
    closed_at: str = "2026-11-05T13:00:00.000Z",
    feedback: dict[str, int] | None = None,
    quantity: int = 0,
    returned: int = 0,
) -> dict[str, Any]:
    o: dict[str, Any] = {
        "play": play,
        "status": status,
        "holdout": holdout,
        "delivered": not holdout and status != "cancelled" and play != "protect",
        "converted": converted,
        "window_end": "2026-11-05T13:00:00.000Z",
        "closed_at": closed_at,
        "feedback": feedback or {},
        "quantity": quantity,
        "returned_quantity": returned,
    }
    for key, value in (
        ("predicted_accept", accept),
        ("predicted_organic", organic),
        ("predicted_return", returns),
    ):
        if value is not None:
            o[key] = value
    return o


def _planted(uplift: float, seed: int) -> list[dict[str, Any]]:
    """Expand outcomes whose true P(buy | delivered) is 0.05 + `uplift` x the predicted uplift
    and P(buy | held out) is 0.05, the organic rate the engine predicts."""
    rng = np.random.default_rng(seed)
    out = []
    for holdout, n in ((False, 20_000), (True, 5_000)):
        predicted = rng.uniform(0.0, 0.2, n)
        truth = 0.05 + (0.0 if holdout else uplift * predicted)
        bought = rng.random(n) < truth
        out += [
            _outcome(accept=0.05 + u, organic=0.05, holdout=holdout, converted=bool(b))
            for u, b in zip(predicted.tolist(), bought.tolist(), strict=True)
        ]
    return out


def test_uplift_buckets_recover_a_planted_uplift() -> None:
    figures = section(_planted(1.0, seed=11))
    assert json.loads(codec.dumps_sorted(figures)) == figures  # plain numbers, for report.json
    u = figures["uplift"]
    assert u["binning"] == "deciles" and len(u["buckets"]) == 10
    for b in u["buckets"]:
        assert b["enough"] and b["treated_n"] + b["held_out_n"] == 2_500
        assert abs(b["observed"] - b["predicted"]) < 0.03
    o = u["overall"]
    assert o["predicted"] == pytest.approx(0.1, abs=0.005)
    assert o["low"] < 0.1 < o["high"] and o["low"] > 0.07
    assert u["slope"] == pytest.approx(1.0, abs=0.25)
    assert u["rank_correlation"] > 0.8
    assert u["top_half"]["observed"] > u["bottom_half"]["high"]
    inc = u["incremental_conversions"]
    assert inc["low"] < inc["predicted"] < inc["high"]


def test_uplift_that_is_not_there_shows_as_a_flat_line() -> None:
    u = section(_planted(0.0, seed=12))["uplift"]
    assert u["overall"]["low"] < 0.0 < u["overall"]["high"]
    assert abs(u["slope"]) < 0.3
    assert u["overall"]["predicted"] == pytest.approx(0.1, abs=0.005)  # it still expected 0.1


def test_a_thin_holdout_gets_quintiles_a_note_or_no_buckets() -> None:
    thin = section([o for o in _planted(1.0, seed=13) if not o["holdout"]][:5000] + [
        _outcome(holdout=True, accept=0.05 + i / 1000) for i in range(150)
    ])  # fmt: skip
    assert thin["uplift"]["binning"] == "quintiles"
    none = section(_planted(1.0, seed=13)[:20_000] + [_outcome(holdout=True)] * 10)
    assert none["uplift"] is None
    assert any("uplift needs at least 100" in n and "10 held out" in n for n in none["notes"])
    assert none["accept"]["n"] == 20_000


def test_which_outcomes_count() -> None:
    outcomes = [
        *(_outcome(accept=0.2, converted=i < 10) for i in range(40)),  # 10 of 40 bought
        _outcome(accept=0.9, status="cancelled"),  # never deliverable
        _outcome(accept=0.9, status="censored", closed_at="2026-11-04T00:00:00.000Z"),  # open
        # bought, then censored in its return window: the conversion is known
        _outcome(accept=0.2, converted=True, status="censored", closed_at="2026-11-20T00:00:00Z"),
        _outcome(accept=None, organic=None, returns=None),  # written before predictions
        _outcome(play="protect", accept=None, organic=None, returns=None),
        *(
            _outcome("assist", accept=0.3, feedback={"impression": 1, "click": 1})
            for _ in range(15)
        ),
        *(_outcome("assist", accept=0.3, feedback={"impression": 1}) for _ in range(25)),
        *(_outcome("assist", accept=0.3) for _ in range(50)),  # never shown
        *(_outcome("assist", holdout=True, feedback={"impression": 1}) for _ in range(5)),
    ]
    c = section(outcomes)
    assert c["accept"]["n"] == 41 and c["accept"]["positives"] == 11
    assert c["accept"]["mean_predicted"] == pytest.approx(0.2)
    assert c["accept"]["by_play"]["expand"]["observed"] == pytest.approx(11 / 41)
    assert c["assist"]["n"] == 40 and c["assist"]["observed"] == pytest.approx(15 / 40)
    assert c["outcomes"]["without_predictions"] == 1
    assert c["outcomes"]["window_open"] == 1
    assert any(n.startswith("1 of ") and "no predictions" in n for n in c["notes"])
    assert window_ran(_outcome(status="evicted", closed_at="2026-11-06T00:00:00Z"))
    assert not window_ran(_outcome(status="evicted", closed_at="2026-11-04T00:00:00Z"))
    assert not window_ran(_outcome(status="censored", closed_at="not a time"))


def test_returns_prefer_closed_return_windows_and_say_when_they_are_open() -> None:
    def bought(status: str, returned: bool) -> dict[str, Any]:
        return _outcome(
            returns=0.25, converted=True, status=status, quantity=1, returned=int(returned),
            closed_at="2026-12-05T13:00:00Z",
        )  # fmt: skip

    open_only = section([bought("censored", i % 10 == 0) for i in range(60)])
    assert open_only["returns"]["n"] == 60 and open_only["returns"]["observed"] == 0.1
    assert open_only["returns"]["return_windows"] == {"closed": 0, "open": 60}
    assert any("lower bounds" in n for n in open_only["notes"])
    mixed = section(
        [bought("closed", i % 4 == 0) for i in range(120)]
        + [bought("censored", False) for _ in range(80)]
    )
    assert mixed["returns"]["n"] == 120 and mixed["returns"]["observed"] == 0.25
    assert mixed["returns"]["ece"] == pytest.approx(0.0, abs=1e-12)  # 0.25 forecast, 0.25 seen
    assert not any("lower bounds" in n for n in mixed["notes"])
    # a purchase not delivered (held out) or not credited (quantity 0) is not scored
    held = section([_outcome(holdout=True, converted=True, quantity=1)] * 40)
    assert held["returns"] is None
    other_touch = section([_outcome(converted=True, quantity=0)] * 40)
    assert other_touch["returns"] is None and other_touch["accept"]["n"] == 40


def test_outcomes_without_predictions_are_skipped_not_a_crash() -> None:
    old = [_outcome(accept=None, organic=None, returns=None) for _ in range(50)]
    c = section(old)
    assert c["accept"] is None and c["returns"] is None and c["uplift"] is None
    assert c["notes"] == [
        "no outcome carries the engine's predictions (written before they were recorded): "
        "nothing to calibrate"
    ]
    assert section([])["accept"] is None
    weird = [_outcome(accept=1.5), _outcome(accept=True), {"play": "expand"}]
    assert section(weird)["outcomes"]["without_predictions"] == 3
