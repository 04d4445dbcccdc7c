"""What an onsite offer costs the purchase under way, learned from held-out decisions.

An offer on a product page, in the cart or at checkout can distract a customer from the
purchase they came for. The policy starts from a prior (`intensity.abandon_risk`, scaled by the
moment's `pressure`); tact then compares, for the decisions that chose an onsite offer at those
moments, how often an order followed within `distraction.completion_hours` when the offer was
delivered and when the customer was held out (decided the same way, never shown it: a
randomised comparison, so the difference is what the offer did). The learned difference per
moment and intensity, shrunk towards the prior by `distraction.strength` observations, scales
the pressure cost in arbitration.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from app.policy import Policy

MOMENTS = ("browse", "cart", "checkout")
HELD = "held"


class CompletionCounts:
    """Per "moment|intensity" (delivered) or "moment|held": [decisions, completed]."""

    def __init__(self) -> None:
        self.counts: dict[str, list[float]] = {}

    def add(self, moment: str, arm: str, completed: bool) -> None:
        row = self.counts.setdefault(f"{moment}|{arm}", [0.0, 0.0])
        row[0] += 1.0
        row[1] += float(completed)

    def get(self, moment: str, arm: str) -> tuple[float, float]:
        row = self.counts.get(f"{moment}|{arm}", (0.0, 0.0))
        return row[0], row[1]

    def state(self) -> dict[str, Any]:
        return {k: list(v) for k, v in self.counts.items()}

    def restore(self, state: Mapping[str, Any]) -> None:
        self.counts = {k: [float(x) for x in v] for k, v in state.items()}


class Distraction:
    """Reads the counts as a factor on the prior abandon risk of each moment and intensity."""

    def __init__(self, policy: Policy, counts: CompletionCounts) -> None:
        self.counts = counts
        self.strength = policy.distraction.strength
        self.prior = {
            (m, i): policy.moments[m].pressure * risk
            for m in MOMENTS
            if m in policy.moments
            for i, risk in policy.intensity.abandon_risk.items()
        }

    def abandon(self, moment: str, intensity: str) -> float:
        """The chance an onsite offer at this intensity costs the purchase under way."""
        prior = self.prior.get((moment, intensity), 0.0)
        held_n, held_done = self.counts.get(moment, HELD)
        shown_n, shown_done = self.counts.get(moment, intensity)
        n = min(held_n, shown_n)
        if n <= 0:
            return prior
        seen = held_done / held_n - shown_done / shown_n
        return max((self.strength * prior + n * seen) / (self.strength + n), 0.0)

    def factor(self, moment: str, intensity: str) -> float:
        """Learned abandon risk over the prior's (1 until the data says otherwise)."""
        prior = self.prior.get((moment, intensity), 0.0)
        return self.abandon(moment, intensity) / prior if prior > 0 else 1.0
