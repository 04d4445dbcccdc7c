"""Exploration: Thompson sampling over the arms a decision may take, each arm's probability
known exactly, so every Action can log the propensity with which it was chosen.

An arm is an (offer, frame) pair the policy's rules allow, on its best channel and intensity.
Its expected incremental profit is `p x value - costs`; the uncertainty is in `p`, whose
posterior relative spread comes from the outcomes seen so far in the arm's cell (segment,
play, frame): a Beta posterior that starts at the policy's `prior_conversions` out of
`prior_trials` and narrows with every outcome. Protect is the arm that earns the policy's
`min_expected_profit` for sure.

Thompson sampling draws each arm's profit from its posterior and takes the largest; the
probability that arm i wins is

    P(i) = integral of f_i(x) * prod_{j != i} F_j(x) over x > floor

computed by Gauss-Legendre quadrature on Normal approximations of the posteriors. The choice
is then drawn from that distribution with a uniform hashed from the seed and the action id:
the logged propensity is exactly the probability the choice was made with, and a redelivered
event makes the same choice.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from hashlib import blake2b
from typing import Any

import numpy as np
from numpy.polynomial.legendre import leggauss
from scipy.special import ndtr

_NODES, _WEIGHTS = leggauss(16)
_NODES_1 = _NODES + 1.0  # the nodes moved onto [0, 2]
_DIAGONALS: dict[int, np.ndarray] = {}  # k -> arange(k): an arm never beats itself
_QUADRATURE = tuple(zip(_NODES.tolist(), _WEIGHTS.tolist(), strict=True))
_Z_MAX = 6.0
_SQRT2 = math.sqrt(2.0)
_SQRT_2PI = math.sqrt(2.0 * math.pi)
_SCALE = float(2**64)


def uniform(seed: int, key: str) -> float:
    """A number in [0, 1) fixed by the seed and the key (the action id)."""
    digest = blake2b(f"{seed}\x1f{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / _SCALE


def pick(probabilities: Sequence[float], u: float) -> int:
    """The index whose cumulative probability first exceeds `u`."""
    total = 0.0
    for i, p in enumerate(probabilities):
        total += p
        if u < total:
            return i
    return len(probabilities) - 1


def contenders(means: Sequence[float], sds: Sequence[float], floor: float, z: float) -> list[int]:
    """Arms that can win: within `z` posterior sds of the best lower bound (and of `floor`,
    what protect earns). Index len(means) stands for protect."""
    lower = max((m - z * s for m, s in zip(means, sds, strict=True)), default=-math.inf)
    cut = max(lower, floor)
    out = [i for i, (m, s) in enumerate(zip(means, sds, strict=True)) if m + z * s >= cut]
    if lower < floor:
        out.append(len(means))
    return out


def win_probabilities(means: Sequence[float], sds: Sequence[float], floor: float) -> list[float]:
    """P(arm i's draw is the largest and above `floor`) for each arm, then P(no draw above
    `floor`) for protect; they sum to 1. (Plain Python for a few arms, numpy for more: the
    same quadrature, whichever is faster.)"""
    if len(means) <= 3:
        return _win_probabilities_small(means, sds, floor)
    mu = np.array(means, dtype=float)
    sd = np.maximum(np.array(sds, dtype=float), 1e-9)
    k = len(mu)
    a = np.minimum(np.maximum((floor - mu) / sd, -_Z_MAX), _Z_MAX)
    half = (_Z_MAX - a) / 2.0
    h = half[:, None]
    z = a[:, None] + h * _NODES_1
    w = h * _WEIGHTS * np.exp(-0.5 * z * z) / _SQRT_2PI
    x = mu[:, None] + sd[:, None] * z
    beaten = ndtr((x[:, None, :] - mu[None, :, None]) / sd[None, :, None])
    diagonal = _DIAGONALS.get(k)
    if diagonal is None:
        diagonal = _DIAGONALS[k] = np.arange(k)
    beaten[diagonal, diagonal, :] = 1.0
    wins = (w * beaten.prod(axis=1)).sum(axis=1)
    protect = float(ndtr((floor - mu) / sd).prod())
    probs = [*wins.tolist(), protect]
    total = sum(probs)
    return [p / total for p in probs]


def _win_probabilities_small(
    means: Sequence[float], sds: Sequence[float], floor: float
) -> list[float]:
    sd = [max(s, 1e-9) for s in sds]
    k = len(means)
    out = []
    for i in range(k):
        mi, si = means[i], sd[i]
        a = max(min((floor - mi) / si, _Z_MAX), -_Z_MAX)
        half = (_Z_MAX - a) / 2.0
        total = 0.0
        for x, w in _QUADRATURE:
            z = a + half * (x + 1.0)
            v = mi + si * z
            p = w * math.exp(-0.5 * z * z)
            for j in range(k):
                if j != i:
                    p *= 0.5 * math.erfc((means[j] - v) / (sd[j] * _SQRT2))
            total += p
        out.append(total * half / _SQRT_2PI)
    protect = 1.0
    for j in range(k):
        protect *= 0.5 * math.erfc((means[j] - floor) / (sd[j] * _SQRT2))
    out.append(protect)
    scale = 1.0 / sum(out)
    return [p * scale for p in out]


def choice_distribution(
    means: Sequence[float], sds: Sequence[float], floor: float, z: float
) -> dict[int, float]:
    """Arm index -> probability of being chosen (len(means) is protect); arms out of
    contention are left out: they are never chosen."""
    alive = contenders(means, sds, floor, z)
    if len(alive) == 1:
        return {alive[0]: 1.0}
    if len(alive) == 2 and alive[1] == len(means):  # one arm against protect: closed form
        i = alive[0]
        quiet = 0.5 * math.erfc((means[i] - floor) / (max(sds[i], 1e-9) * _SQRT2))
        return {i: 1.0 - quiet, len(means): quiet}
    arms = [i for i in alive if i < len(means)]
    probs = win_probabilities([means[i] for i in arms], [sds[i] for i in arms], floor)
    out = {i: p for i, p in zip(arms, probs, strict=False)}
    if len(means) in alive:
        out[len(means)] = probs[-1]
    else:  # protect was out of contention: its sliver goes to the arms, in proportion
        scale = 1.0 / (1.0 - probs[-1]) if probs[-1] < 1.0 else 1.0
        out = {i: p * scale for i, p in out.items()}
    return out


class Cells:
    """Per (segment, play, frame) cell: outcomes and conversions of delivered offers.

    The bandit's posterior of the cell's acceptance rate is Beta(prior_conversions +
    conversions, prior_trials - prior_conversions + failures); its relative spread sets how
    far Thompson sampling explores arms of the cell. Counts fade with every new outcome (a
    cell remembers about `memory` of them), so a cell never becomes so sure that a changed
    world goes unnoticed: exploration keeps probing at a cost the spread accounts for. The
    same counts are the frame tests' results, reported per frame and segment.
    """

    def __init__(
        self, prior_conversions: float, prior_trials: float, memory: float = float("inf")
    ) -> None:
        self.alpha0 = prior_conversions
        self.beta0 = prior_trials - prior_conversions
        self.keep = 1.0 - 1.0 / memory  # older outcomes fade: a cell never becomes certain
        self.counts: dict[str, list[float]] = {}  # key -> [trials, conversions]
        self._spread: dict[tuple[str, str, str], float] = {}
        self.dirty = False

    @staticmethod
    def key(segment: str, play: str, frame: str) -> str:
        return f"{segment}|{play}|{frame}"

    def update(self, segment: str, play: str, frame: str, converted: bool) -> None:
        key = self.key(segment, play, frame)
        row = self.counts.get(key)
        if row is None:
            row = self.counts[key] = [0.0, 0.0]
        row[0] = row[0] * self.keep + 1.0
        row[1] = row[1] * self.keep + float(converted)
        self._spread.pop((segment, play, frame), None)
        self.dirty = True

    def spread(self, segment: str, play: str, frame: str) -> float:
        """Relative standard deviation of the cell's acceptance-rate posterior."""
        found = self._spread.get((segment, play, frame))
        if found is None:
            row = self.counts.get(self.key(segment, play, frame))
            alpha = self.alpha0 + (row[1] if row else 0.0)
            beta = self.beta0 + (row[0] - row[1] if row else 0.0)
            found = math.sqrt(beta / (alpha * (alpha + beta + 1.0)))
            self._spread[(segment, play, frame)] = found
        return found

    def get(self, key: str) -> tuple[float, float]:
        """(trials, conversions) of a cell."""
        row = self.counts.get(key, [0.0, 0.0])
        return row[0], row[1]

    def state(self) -> dict[str, Any]:
        return {k: list(v) for k, v in self.counts.items()}

    def restore(self, state: Mapping[str, Sequence[float]]) -> None:
        self.counts = {k: [float(x) for x in v] for k, v in state.items()}
        self._spread = {}
