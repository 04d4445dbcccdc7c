"""Off-policy estimators: what a candidate policy would have earned on logged decisions.

Each logged decision i has its reward r_i, the propensity p_i with which the logging policy
chose its action a_i, the probability pi_i the candidate gives a_i in the same context, the
reward model's prediction for a_i, and the candidate's expected prediction over all its arms:

    IPS    mean(w_i r_i),                     w_i = pi_i / p_i
    SNIPS  sum(w_i r_i) / sum(w_i)            (self-normalised: lower variance, small bias)
    DR     mean(dm_i + w_i (r_i - rhat_i))    (doubly robust: unbiased when either the
                                               propensities or the reward model are right)

Intervals are percentile bootstraps that resample customers (a customer's decisions are not
independent of each other). The effective sample size (sum w)^2 / sum w^2 says how many
decisions the estimate really rests on: far below n means the candidate is far from what was
logged, and the estimate is weak.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

BOOTSTRAP = 1000


@dataclass(frozen=True, slots=True)
class Unit:
    """One logged decision, seen by the candidate."""

    customer: str
    reward: float
    propensity: float  # logging policy's probability of the logged action
    target: float  # candidate's probability of the logged action
    rhat: float  # reward model's prediction for the logged action
    dm: float  # sum over the candidate's arms of pi(a) x rhat(a)


def _values(r: np.ndarray, w: np.ndarray, rhat: np.ndarray, dm: np.ndarray) -> dict[str, float]:
    n = len(r)
    total_w = float(w.sum())
    return {
        "logged": float(r.mean()),
        "ips": float((w * r).sum() / n),
        "snips": float((w * r).sum() / total_w) if total_w > 0 else float("nan"),
        "dr": float((dm + w * (r - rhat)).sum() / n),
        "dm": float(dm.mean()),
    }


def estimate(units: Sequence[Unit], seed: int = 0, reps: int = BOOTSTRAP) -> dict[str, Any]:
    """Every estimator's value, 95% interval and difference from the logged policy."""
    if not units:
        raise ValueError("no logged decisions to evaluate")
    r = np.array([u.reward for u in units])
    p = np.array([u.propensity for u in units])
    w = np.array([u.target for u in units]) / p
    rhat = np.array([u.rhat for u in units])
    dm = np.array([u.dm for u in units])
    point = _values(r, w, rhat, dm)
    by_customer: dict[str, list[int]] = defaultdict(list)
    for i, u in enumerate(units):
        by_customer[u.customer].append(i)
    groups = [np.array(ix) for ix in by_customer.values()]
    rng = np.random.default_rng(seed)
    draws: dict[str, list[float]] = {k: [] for k in point}
    for _ in range(reps):
        pick = rng.integers(0, len(groups), size=len(groups))
        ix = np.concatenate([groups[g] for g in pick])
        for k, v in _values(r[ix], w[ix], rhat[ix], dm[ix]).items():
            draws[k].append(v)
    # Differences from the logged policy use the same resamples (paired).
    out: dict[str, Any] = {}
    logged_draws = np.array(draws["logged"])
    for k, v in point.items():
        values = np.array(draws[k])
        low, high = np.nanpercentile(values, [2.5, 97.5])
        d_low, d_high = np.nanpercentile(values - logged_draws, [2.5, 97.5])
        out[k] = {
            "value": v,
            "low": float(low),
            "high": float(high),
            "vs_logged": v - point["logged"],
            "vs_logged_low": float(d_low),
            "vs_logged_high": float(d_high),
        }
    out["n"] = len(units)
    out["customers"] = len(groups)
    out["ess"] = float(w.sum() ** 2 / (w**2).sum()) if (w**2).sum() > 0 else 0.0
    out["support"] = float((w > 0).mean())  # share of decisions the candidate could have made
    out["max_weight"] = float(w.max())
    # E[w] is the candidate's probability of arms the logging policy could choose: near 1 when
    # the log covers the candidate; below 1, plain IPS is biased low (SNIPS and DR are not).
    out["mean_weight"] = float(w.mean())
    return out
