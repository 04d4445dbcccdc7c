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
is drawn with a uniform hashed from the seed and the action id (a redelivered event makes the
same choice), computing only the probabilities it walks past (`Draw`): the logged propensity
is exactly the probability the choice was made with.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from hashlib import blake2b
from typing import Any, Final

from numpy.polynomial.legendre import leggauss

_NODES, _WEIGHTS = leggauss(16)
_QUADRATURE: Final = tuple(zip(_NODES.tolist(), _WEIGHTS.tolist(), strict=True))
_Z_MAX: Final = 6.0
_SQRT2: Final = math.sqrt(2.0)
_SQRT_2PI: Final = math.sqrt(2.0 * math.pi)
_SCALE: Final = float(2**64)


def uniform(seed: int, key: str) -> float:
    """A number in [0, 1) fixed by the seed and the key (the action id)."""
    digest = blake2b(f"{seed}\x1f{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / _SCALE


def contenders(means: Sequence[float], sds: Sequence[float], floor: float, z: float) -> list[int]:
    """Arms that can win: within `z` posterior sds of the best lower bound (and of `floor`,
    what protect earns). Index len(means) stands for protect."""
    lower = max((m - z * s for m, s in zip(means, sds, strict=True)), default=-math.inf)
    cut = max(lower, floor)
    out = [i for i, (m, s) in enumerate(zip(means, sds, strict=True)) if m + z * s >= cut]
    if lower < floor:
        out.append(len(means))
    return out


def _win(i: int, means: list[float], sds: list[float], inv: list[float], floor: float) -> float:
    """P(arm i's draw is the largest and above `floor`): Gauss-Legendre quadrature of
    f_i(x) * prod_{j != i} F_j(x) on Normal posteriors (`inv`: 1 / (sd * sqrt 2))."""
    mi, si = means[i], sds[i]
    a = max(min((floor - mi) / si, _Z_MAX), -_Z_MAX)
    half = (_Z_MAX - a) / 2.0
    others = [j for j in range(len(means)) if j != i]
    erfc = math.erfc
    total = 0.0
    for x, w in _QUADRATURE:
        z = a + half * (x + 1.0)
        v = mi + si * z
        # (math.exp called as such is compiled to C's exp, the function math.exp calls;
        # through a name bound at run time it was a Python call, a float boxed each way: a
        # draw of one to four arms took 5.8 us, now 4.9, the same probabilities)
        p = w * math.exp(-0.5 * z * z)
        for j in others:
            p *= erfc((means[j] - v) * inv[j])  # 2 x F_j(v)
        total += p
    return total * half / _SQRT_2PI * 0.5 ** len(others)


class Draw:
    """The Thompson draw of one decision: arms with Normal posteriors of their expected
    profit (`means`, `sds`) and protect, which earns `floor` for sure. Arms out of contention
    (`contenders`) are never drawn.

    The uniform `u` picks protect when it falls in the top `P(protect)` of [0, 1) (the chance
    that no arm's draw beats the floor, in closed form); below that, the arms in contention
    share the rest in their order (the arbiter's, best expected profit first), each its win
    probability by quadrature capped by what is left, the last taking what is left. So the
    probabilities sum to exactly 1, and `pick(u)` computes only the ones it walks past: the
    probability it returns is exactly the one the choice was made with."""

    __slots__ = ("_distribution", "_inv", "arms", "floor", "means", "protect", "quiet", "sds")

    def __init__(self, means: Sequence[float], sds: Sequence[float], floor: float, z: float):
        alive = contenders(means, sds, floor, z)
        self.protect = len(means) if len(means) in alive else None  # its index, if in contention
        self.arms = [i for i in alive if i < len(means)]
        self.means = [means[i] for i in self.arms]
        self.sds = [max(sds[i], 1e-9) for i in self.arms]
        self._inv = [1.0 / (s * _SQRT2) for s in self.sds]
        self.floor = floor
        quiet = 0.0  # P(protect)
        if self.protect is not None:
            quiet = 1.0
            for m, c in zip(self.means, self._inv, strict=True):
                quiet *= 0.5 * math.erfc((m - floor) * c)  # this arm's draw is below the floor
        self.quiet = quiet if self.arms else 1.0
        self._distribution: dict[int, float] | None = None

    def _arms(self) -> Iterator[tuple[int, float]]:
        """(index, probability) of the arms, in order."""
        means, sds, inv, floor, arms = self.means, self.sds, self._inv, self.floor, self.arms
        left = 1.0 - self.quiet
        last = len(arms) - 1
        for n, i in enumerate(arms):
            p = max(left, 0.0) if n == last else min(_win(n, means, sds, inv, floor), left)
            yield i, p
            left -= p

    def pick(self, u: float) -> tuple[int, float]:
        """The choice the uniform `u` draws (len(means): protect), and its probability."""
        if self.protect is not None and u >= 1.0 - self.quiet:
            return self.protect, self.quiet
        total, chosen = 0.0, (-1, 0.0)
        for i, p in self._arms():
            total += p
            if p > 0.0:
                chosen = (i, p)
                if u < total:
                    break
        return chosen  # (u past a sum rounded below: the last arm that can be drawn)

    def distribution(self) -> dict[int, float]:
        """Index -> probability of every choice in contention (len(means): protect)."""
        if self._distribution is None:
            self._distribution = dict(self._arms())
            if self.protect is not None:
                self._distribution[self.protect] = self.quiet
        return self._distribution


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
