"""What onsite actions do to the purchase under way, learned from held-out decisions.

An offer on a product page, in the cart or at checkout can distract a customer from the
purchase they came for; fit guidance or reassurance (assist) can help it. The policy starts
from priors (`intensity.abandon_risk` scaled by the moment's `pressure`; `assist_lift`); tact
then compares, for the decisions that chose an onsite action at those moments, how often an
order followed within `distraction.completion_hours` when it was delivered and when it was held
back (the customer-level holdouts, and `experiments.distraction_test` per decision: randomised
comparisons, so the difference is what the action did). Each measured difference is weighed
against its prior by precision (the prior's `distraction.prior_sd` against the sampling
variance of a difference of two rates), and the result scales the pressure cost of offers and
the value of assists in arbitration.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Final

from app.policy import INTENSITY_ORDER, Policy

MOMENTS: Final = ("browse", "cart", "checkout")
HELD: Final = "held"
ASSIST: Final = "assist"
ASSIST_HELD: Final = "assist_held"
_ENGAGE_PRIOR: Final = 0.15  # the share of assists shown that a customer engages with, a priori
_MIN_SD: Final = 0.001  # the least sd of a prior effect (a prior of 0 can still be learned from)


class CompletionCounts:
    """Per "moment|intensity" (delivered) or "moment|held": [decisions, completed]."""

    def __init__(self) -> None:
        self.counts: dict[str, list[float]] = {}
        self.by_moment: dict[str, list[float]] = {}  # the rows of each moment, summed
        self.version = 0  # changes with every count: readers cache by it

    def add(self, moment: str, arm: str, completed: bool) -> None:
        for row in (
            self.counts.setdefault(f"{moment}|{arm}", [0.0, 0.0]),
            self.by_moment.setdefault(moment, [0.0, 0.0]),
        ):
            row[0] += 1.0
            row[1] += float(completed)
        self.version += 1

    def get(self, moment: str, arm: str) -> tuple[float, float]:
        row = self.counts.get(f"{moment}|{arm}", (0.0, 0.0))
        return row[0], row[1]

    def state(self) -> dict[str, Any]:
        return {k: list(v) for k, v in self.counts.items()}

    def restore(self, state: Mapping[str, Any]) -> None:
        self.counts = {k: [float(x) for x in v] for k, v in state.items()}
        self.by_moment = {}
        for key, (rows, completed) in self.counts.items():
            total = self.by_moment.setdefault(key.split("|", 1)[0], [0.0, 0.0])
            total[0] += rows  # whole numbers: the same sums in any order
            total[1] += completed
        self.version += 1


class Distraction:
    """Reads the counts as a factor on the prior abandon risk of each moment and intensity."""

    def __init__(self, policy: Policy, counts: CompletionCounts) -> None:
        self.counts = counts
        self.prior_sd = policy.distraction.prior_sd
        self.prior_sd_share = policy.distraction.prior_sd_share
        self._read: dict[tuple[str, str], Any] = {}  # what was read of the counts, by moment
        self._read_at = -1  # ... as of this version of the counts
        self.assist_lift = policy.assist_lift
        spec = policy.distraction
        self.completion_prior = spec.completion_prior
        self.completion_weight = spec.completion_weight
        self.prior = {
            (m, i): policy.moments[m].pressure * risk
            for m in MOMENTS
            if m in policy.moments
            for i, risk in policy.intensity.abandon_risk.items()
        }

    def abandon(self, moment: str, intensity: str) -> float:
        """The chance an onsite offer at this intensity costs the purchase under way: of an
        order that would have come, so in the cart and at checkout the prior is weighed by the
        share of them that end in an order (`completion`)."""
        prior = self.prior.get((moment, intensity), 0.0) * self.completion(moment)
        held_n, held_done = self.counts.get(moment, HELD)
        shown_n, shown_done = self.counts.get(moment, intensity)
        return max(self._posterior(prior, held_n, held_done, shown_n, shown_done, -1.0), 0.0)

    def _posterior(
        self,
        prior: float,
        held_n: float,
        held_done: float,
        shown_n: float,
        shown_done: float,
        sign: float,
    ) -> float:
        """The prior effect and the measured one (sign x (shown rate - held rate)), weighed by
        their precisions: a difference of two rates from few decisions moves it little. The
        prior's sd is `prior_sd`, and at most `prior_sd_share` of the prior itself: small
        effects (an offer on a product page) need much evidence to move far."""
        if held_n <= 0 or shown_n <= 0:
            return prior
        held, shown = held_done / held_n, shown_done / shown_n
        pooled = (held_done + shown_done) / (held_n + shown_n)
        variance = max(pooled * (1.0 - pooled), 0.01) * (1.0 / held_n + 1.0 / shown_n)
        prior_variance = min(self.prior_sd, max(self.prior_sd_share * prior, _MIN_SD)) ** 2
        weight = prior_variance / (prior_variance + variance)
        return (1.0 - weight) * prior + weight * sign * (shown - held)

    def completion(self, moment: str) -> float:
        """The share of carts (checkouts) whose order came in time, whatever was shown: the
        orders an offer there could cost. 1 at browse, whose stake weighs the item in focus by
        how likely it is bought already, and where most decisions have no cart."""
        if moment not in ("cart", "checkout"):
            return 1.0
        n, done = self.counts.by_moment.get(moment, (0.0, 0.0))
        weight = self.completion_weight
        return (done + weight * self.completion_prior) / (n + weight)

    def factor(self, moment: str, intensity: str) -> float:
        """Learned abandon risk over the prior's: the share of carts that complete (`completion`)
        until the data says otherwise."""
        prior = self.prior.get((moment, intensity), 0.0)
        return self.abandon(moment, intensity) / prior if prior > 0 else 1.0

    def factors(self, moment: str) -> dict[str, float]:
        """`factor` of every intensity at `moment` (read again once the counts move)."""
        factors: dict[str, float] = self._cached(
            ("abandon", moment), lambda: {i: self.factor(moment, i) for i in INTENSITY_ORDER}
        )
        return factors

    def assist_factor(self, moment: str) -> float:
        """Learned lift of an assist shown over the prior's (1 until the data says
        otherwise): completion with the assist shown against held back."""
        return float(self._cached(("assist", moment), lambda: self._assist_factor(moment)))

    def _cached(self, key: tuple[str, str], read: Callable[[], Any]) -> Any:
        if self._read_at != self.counts.version:
            self._read, self._read_at = {}, self.counts.version
        found = self._read.get(key)
        if found is None:
            found = self._read[key] = read()
        return found

    def _assist_factor(self, moment: str) -> float:
        held_n, held_done = self.counts.get(moment, ASSIST_HELD)
        shown_n, shown_done = self.counts.get(moment, ASSIST)
        if held_n <= 0 or shown_n <= 0 or moment not in MOMENTS:
            return 1.0
        base = (held_done + shown_done) / (held_n + shown_n)
        prior = _ENGAGE_PRIOR * self.assist_lift * max(base, 0.05)
        lift = self._posterior(prior, held_n, held_done, shown_n, shown_done, 1.0)
        return max(lift, 0.0) / prior
