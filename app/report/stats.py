"""The statistics of the report: differences with bootstrap intervals, CUPED, Kaplan-Meier
survival, intervals for rates and their differences, scores of probability forecasts (Brier,
AUC), and equal-count cuts. Plain numbers in, plain numbers out; seeded, so a report of the
same data is the same report."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
from scipy.stats import beta as beta_dist
from scipy.stats import rankdata, spearmanr

BOOTSTRAP = 1000
T = TypeVar("T")
Z95 = 1.959963984540054


@dataclass(frozen=True, slots=True)
class Estimate:
    """A difference of means (treated - control) with its 95% interval."""

    value: float
    low: float
    high: float
    treated_mean: float
    control_mean: float
    treated_n: int
    control_n: int

    def as_dict(self) -> dict[str, float | int]:
        return {
            "value": self.value,
            "low": self.low,
            "high": self.high,
            "treated_mean": self.treated_mean,
            "control_mean": self.control_mean,
            "treated_n": self.treated_n,
            "control_n": self.control_n,
        }


def difference(
    treated: Sequence[float], control: Sequence[float], seed: int = 0, reps: int = BOOTSTRAP
) -> Estimate | None:
    """Mean(treated) - mean(control) with a percentile bootstrap interval (each group
    resampled on its own). None when a group is empty."""
    t = np.asarray(treated, dtype=float)
    c = np.asarray(control, dtype=float)
    if not len(t) or not len(c):
        return None
    rng = np.random.default_rng(seed)
    t_means = t[rng.integers(0, len(t), size=(reps, len(t)))].mean(axis=1)
    c_means = c[rng.integers(0, len(c), size=(reps, len(c)))].mean(axis=1)
    low, high = np.percentile(t_means - c_means, [2.5, 97.5])
    return Estimate(
        float(t.mean() - c.mean()),
        float(low),
        float(high),
        float(t.mean()),
        float(c.mean()),
        len(t),
        len(c),
    )


def cuped(
    treated: Sequence[float],
    treated_pre: Sequence[float],
    control: Sequence[float],
    control_pre: Sequence[float],
) -> tuple[list[float], list[float], float]:
    """CUPED: each outcome less theta x (its pre-period covariate - the pooled mean), with
    theta = cov(y, x) / var(x) pooled over both groups. Returns the adjusted groups and the
    share of variance removed (0 when the covariate is constant)."""
    y = np.asarray([*treated, *control], dtype=float)
    x = np.asarray([*treated_pre, *control_pre], dtype=float)
    if len(y) < 3 or float(np.var(x)) == 0.0:
        return list(treated), list(control), 0.0
    theta = float(np.cov(y, x)[0, 1] / np.var(x, ddof=1))
    adjusted = y - theta * (x - x.mean())
    removed = 1.0 - float(np.var(adjusted)) / float(np.var(y)) if np.var(y) > 0 else 0.0
    n = len(treated)
    return adjusted[:n].tolist(), adjusted[n:].tolist(), max(removed, 0.0)


def wilson(successes: int, n: int) -> tuple[float, float, float]:
    """A proportion and its 95% Wilson interval."""
    if n == 0:
        return 0.0, 0.0, 0.0
    p = successes / n
    denom = 1.0 + Z95**2 / n
    centre = (p + Z95**2 / (2 * n)) / denom
    half = Z95 * math.sqrt(p * (1 - p) / n + Z95**2 / (4 * n * n)) / denom
    return p, max(centre - half, 0.0), min(centre + half, 1.0)


def rate_difference(k1: int, n1: int, k2: int, n2: int) -> tuple[float, float, float]:
    """k1/n1 - k2/n2 and its 95% interval from the two Wilson intervals (Newcombe's hybrid
    score interval). Zeros when a group is empty."""
    if n1 == 0 or n2 == 0:
        return 0.0, 0.0, 0.0
    p1, low1, high1 = wilson(k1, n1)
    p2, low2, high2 = wilson(k2, n2)
    d = p1 - p2
    return (
        d,
        d - math.sqrt((p1 - low1) ** 2 + (high2 - p2) ** 2),
        d + math.sqrt((high1 - p1) ** 2 + (p2 - low2) ** 2),
    )


def brier(predicted: Sequence[float], observed: Sequence[bool]) -> float:
    """Mean squared difference between forecast probabilities and what happened (0 or 1)."""
    if not predicted:
        return 0.0
    p = np.asarray(predicted, dtype=float)
    y = np.asarray(observed, dtype=float)
    return float(np.mean((p - y) ** 2))


def auc(predicted: Sequence[float], observed: Sequence[bool]) -> float | None:
    """Area under the ROC curve: the chance a random positive is ranked above a random
    negative (ties count a half). None without both classes."""
    y = np.asarray(observed, dtype=bool)
    positives = int(y.sum())
    negatives = len(y) - positives
    if not positives or not negatives:
        return None
    ranks = rankdata(np.asarray(predicted, dtype=float))
    return float((ranks[y].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def spearman(xs: Sequence[float], ys: Sequence[float]) -> float | None:
    """Rank correlation; None with fewer than 3 points or a constant side."""
    if len(xs) < 3 or len(set(xs)) < 2 or len(set(ys)) < 2:
        return None
    return float(spearmanr(xs, ys).statistic)


def equal_parts(items: Sequence[T], k: int) -> list[Sequence[T]]:
    """`items` cut in order into k runs of equal size (the first ones one longer when it does
    not divide); empty runs dropped."""
    size, extra = divmod(len(items), k)
    out, start = [], 0
    for i in range(k):
        end = start + size + (1 if i < extra else 0)
        out.append(items[start:end])
        start = end
    return [p for p in out if p]


def beta_interval(successes: float, trials: float) -> tuple[float, float, float]:
    """Posterior mean and 95% credible interval of a rate, Beta(1 + s, 1 + f); with no
    successes the interval starts at 0 (and with no failures ends at 1), one-sided, so that
    it contains the observed rate."""
    a, b = 1.0 + successes, 1.0 + max(trials - successes, 0.0)
    low, high = beta_dist.ppf([0.025, 0.975], a, b)
    if successes <= 0:
        low, high = 0.0, beta_dist.ppf(0.95, a, b)
    elif successes >= trials:
        low, high = beta_dist.ppf(0.05, a, b), 1.0
    return a / (a + b), float(low), float(high)


@dataclass(frozen=True, slots=True)
class Survival:
    """A Kaplan-Meier curve: S(t) just after each event time, with Greenwood 95% bands."""

    times: list[float]
    survival: list[float]
    low: list[float]
    high: list[float]
    n: int
    events: int

    def at(self, t: float) -> tuple[float, float, float]:
        """(S(t), low, high) at time t."""
        s, lo, hi = 1.0, 1.0, 1.0
        for when, value, a, b in zip(self.times, self.survival, self.low, self.high, strict=True):
            if when > t:
                break
            s, lo, hi = value, a, b
        return s, lo, hi


def kaplan_meier(durations: Sequence[float], observed: Sequence[bool]) -> Survival:
    """Survival of the time to an event; `observed` False means censored at that duration."""
    pairs = sorted(zip(durations, observed, strict=True))
    at_risk = len(pairs)
    s, var_sum = 1.0, 0.0
    times: list[float] = []
    curve: list[float] = []
    low: list[float] = []
    high: list[float] = []
    i = 0
    events_total = 0
    while i < len(pairs):
        t = pairs[i][0]
        deaths = removed = 0
        while i < len(pairs) and pairs[i][0] == t:
            deaths += pairs[i][1]
            removed += 1
            i += 1
        if deaths:
            s *= 1.0 - deaths / at_risk
            if at_risk > deaths:
                var_sum += deaths / (at_risk * (at_risk - deaths))
            half = Z95 * s * math.sqrt(var_sum)
            times.append(t)
            curve.append(s)
            low.append(max(s - half, 0.0))
            high.append(min(s + half, 1.0))
            events_total += deaths
        at_risk -= removed
    return Survival(times, curve, low, high, len(pairs), events_total)
