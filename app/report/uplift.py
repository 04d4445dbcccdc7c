"""Predicted against observed uplift: delivered against held-out outcomes, in equal-count
buckets of the uplift the engine predicted (P(accept) - P(organic)), cut over both groups.

Observed uplift in a bucket is the conversion rate of its delivered outcomes less that of its
held-out ones. The holdout assigns customers, not decisions, and a customer has many
outcomes, so intervals come from a bootstrap over customers (each arm resampled on its own,
seeded): outcome-level intervals would be far too narrow with a holdout of a few hundred
customers behind thousands of outcomes. A bootstrap says nothing where an arm had no
conversions at all (every resample has none), so each interval is widened to Newcombe's
score interval of the two rates where that is wider. Outcomes without a customer id count as
their own customer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from app.report.stats import BOOTSTRAP, equal_parts, rate_difference, spearman

MIN_BUCKET_ARM = 20  # delivered and held-out outcomes in a bucket to show its uplift
MIN_UPLIFT_DECILES = 400  # held-out outcomes for deciles rather than quintiles
_CELLS_PER_CHUNK = 4_000_000  # bootstrap weights held at once (resamples x customers)


@dataclass(slots=True)
class Arm:
    """One arm's outcomes: predicted uplift, converted, and whose they are."""

    predicted: list[float] = field(default_factory=list)
    converted: list[bool] = field(default_factory=list)
    customers: list[str] = field(default_factory=list)

    def add(self, predicted: float, converted: bool, customer: str) -> None:
        self.predicted.append(predicted)
        self.converted.append(converted)
        self.customers.append(customer)

    def __len__(self) -> int:
        return len(self.predicted)


@dataclass(slots=True)
class _Cells:
    """Outcomes and conversions per customer (rows) and column (bucket, half, all)."""

    n: np.ndarray
    k: np.ndarray

    @classmethod
    def of(cls, arm: Arm, columns: Sequence[tuple[int, ...]], width: int) -> _Cells:
        index: dict[str, int] = {}
        rows = [index.setdefault(c or f"#{i}", len(index)) for i, c in enumerate(arm.customers)]
        n = np.zeros((max(len(index), 1), width))
        k = np.zeros_like(n)
        for row, cols, converted in zip(rows, columns, arm.converted, strict=True):
            for col in cols:
                n[row, col] += 1
                k[row, col] += converted
        return cls(n, k)

    def rates(self, weights: np.ndarray) -> np.ndarray:
        """Rates per column under customer weights (resamples x customers)."""
        n, k = weights @ self.n, weights @ self.k
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(n > 0, k / np.where(n > 0, n, 1), np.nan)


def _resampled(rng: np.random.Generator, customers: int, reps: int) -> np.ndarray:
    """How often each customer is drawn in each of `reps` resamples (reps x customers)."""
    draws = rng.integers(0, customers, size=(reps, customers))
    flat = (draws + np.arange(reps)[:, None] * customers).ravel()
    return np.bincount(flat, minlength=reps * customers).reshape(reps, customers).astype(float)


def _intervals(t: _Cells, c: _Cells, seed: int, reps: int) -> tuple[np.ndarray, np.ndarray]:
    """95% percentile intervals of rate(treated) - rate(held out) per column."""
    rng = np.random.default_rng(seed)
    chunk = max(1, min(reps, _CELLS_PER_CHUNK // (len(t.n) + len(c.n))))
    diffs = []
    for start in range(0, reps, chunk):
        size = min(chunk, reps - start)
        tw, cw = _resampled(rng, len(t.n), size), _resampled(rng, len(c.n), size)
        diffs.append(t.rates(tw) - c.rates(cw))
    all_diffs = np.concatenate(diffs)
    low, high = np.full(all_diffs.shape[1], np.nan), np.full(all_diffs.shape[1], np.nan)
    seen = ~np.all(np.isnan(all_diffs), axis=0)
    if seen.any():
        low[seen], high[seen] = np.nanpercentile(all_diffs[:, seen], [2.5, 97.5], axis=0)
    return low, high


def _slope(xs: Sequence[float], ys: Sequence[float], weights: Sequence[float]) -> float | None:
    """Weighted least-squares slope of ys on xs; None under 3 points or when xs do not vary."""
    total = sum(weights)
    if len(xs) < 3 or not total:
        return None
    mx = sum(w * x for w, x in zip(weights, xs, strict=True)) / total
    my = sum(w * y for w, y in zip(weights, ys, strict=True)) / total
    sxx = sum(w * (x - mx) ** 2 for w, x in zip(weights, xs, strict=True))
    if sxx <= 0:
        return None
    return sum(w * (x - mx) * (y - my) for w, x, y in zip(weights, xs, ys, strict=True)) / sxx


def uplift(
    treated: Arm, held_out: Arm, seed: int = 0, reps: int = BOOTSTRAP
) -> dict[str, Any] | None:
    """Buckets (deciles, or quintiles under MIN_UPLIFT_DECILES held-out outcomes) with their
    mean predicted and observed uplift [95%], the trend across them, the top and bottom
    halves, overall, and incremental conversions among the delivered. None when either arm
    has fewer than 5 x MIN_BUCKET_ARM outcomes."""
    if min(len(treated), len(held_out)) < 5 * MIN_BUCKET_ARM:
        return None
    k = 10 if len(held_out) >= MIN_UPLIFT_DECILES else 5
    tagged = [(u, True, i) for i, u in enumerate(treated.predicted)]
    tagged += [(u, False, i) for i, u in enumerate(held_out.predicted)]
    tagged.sort(key=lambda r: r[0])
    bottom, top, overall = k, k + 1, k + 2  # columns after the buckets
    half = len(tagged) // 2
    cols: dict[bool, list[tuple[int, ...]]] = {
        True: [()] * len(treated),
        False: [()] * len(held_out),
    }
    predicted_sum = np.zeros(k + 3)
    ranges: list[tuple[float, float]] = []
    rank = 0
    for bucket, part in enumerate(equal_parts(tagged, k)):
        ranges.append((part[0][0], part[-1][0]))
        for u, arm, i in part:
            columns = (bucket, bottom if rank < half else top, overall)
            cols[arm][i] = columns
            predicted_sum[list(columns)] += u
            rank += 1
    t = _Cells.of(treated, cols[True], k + 3)
    c = _Cells.of(held_out, cols[False], k + 3)
    low, high = _intervals(t, c, seed, reps)
    nt, kt, nc, kc = t.n.sum(0), t.k.sum(0), c.n.sum(0), c.k.sum(0)

    def cell(col: int) -> dict[str, Any]:
        rate_t = kt[col] / nt[col] if nt[col] else 0.0
        rate_c = kc[col] / nc[col] if nc[col] else 0.0
        value = rate_t - rate_c
        _, score_low, score_high = rate_difference(
            int(kt[col]), int(nt[col]), int(kc[col]), int(nc[col])
        )
        boot_low = float(low[col]) if np.isfinite(low[col]) else float(value)
        boot_high = float(high[col]) if np.isfinite(high[col]) else float(value)
        return {
            "predicted": float(predicted_sum[col] / (nt[col] + nc[col])),
            "treated_n": int(nt[col]),
            "treated_rate": float(rate_t),
            "held_out_n": int(nc[col]),
            "held_out_rate": float(rate_c),
            "observed": float(value),
            "low": min(boot_low, score_low),
            "high": max(boot_high, score_high),
        }

    buckets = []
    for b, (lowest, highest) in enumerate(ranges):
        row = cell(b) | {"from": lowest, "to": highest}
        row["enough"] = min(row["treated_n"], row["held_out_n"]) >= MIN_BUCKET_ARM
        buckets.append(row)
    shown = [b for b in buckets if b["enough"]]
    xs, ys = [b["predicted"] for b in shown], [b["observed"] for b in shown]
    everyone = cell(overall)
    scale = everyone["treated_n"]
    return {
        "binning": "deciles" if k == 10 else "quintiles",
        "interval": "bootstrap over customers",
        "customers": {"treated": len(t.n), "held_out": len(c.n)},
        "overall": everyone,
        "buckets": buckets,
        "rank_correlation": spearman(xs, ys),
        "slope": _slope(xs, ys, [b["treated_n"] + b["held_out_n"] for b in shown]),
        "bottom_half": cell(bottom),
        "top_half": cell(top),
        "incremental_conversions": {
            "predicted": float(sum(treated.predicted)),
            "observed": everyone["observed"] * scale,
            "low": everyone["low"] * scale,
            "high": everyone["high"] * scale,
        },
    }
