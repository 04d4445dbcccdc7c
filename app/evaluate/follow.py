"""Following a log: a candidate policy's engine that takes the logged decisions.

At every decision the candidate scores its own arms and works out the probability it would
have chosen each, then takes the arm that was logged, so its customers' state, attribution
windows and learning follow exactly what really happened. What is recorded is the candidate's
probability of the logged arm and its whole distribution: what off-policy evaluation needs.
With the logging policy itself as the candidate, every decision is reproduced and the
candidate's probability equals the logged propensity.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from app.actions import relation_of
from app.bandit import Draw
from app.context import Scored
from app.decisions import NO_ACTION, ArmResolver, Chooser
from app.experiments import Assignment, Experiments
from app.policy import Policy

Arm = tuple[str, str, str | None, str | None, str]  # play, channel, sku, frame, intensity
PROTECT: Arm = ("protect", "none", None, None, "low")


def arm_of_action(action: Mapping[str, Any]) -> Arm:
    return (
        action["play"],
        action["channel"],
        action.get("offer_sku"),
        action.get("frame"),
        action["intensity"] if action["play"] != "protect" else "low",
    )


def arm_of(scored: Scored | None) -> Arm:
    if scored is None:
        return PROTECT
    return (
        scored.offer.play,
        scored.channel,
        scored.offer.product.sku,
        scored.frame,
        scored.intensity,
    )


@dataclass(slots=True)
class Seen:
    """What the candidate made of one logged decision."""

    moment: str
    target: float  # its probability of the logged arm
    distribution: list[tuple[Arm, float]] = field(default_factory=list)
    forced: bool = False  # the logged arm was not among the candidate's (probability 0)


class FollowChooser(Chooser):
    def __init__(self, logged: Mapping[str, Mapping[str, Any]]) -> None:
        super().__init__(0)
        self.logged = logged
        self.seen: dict[str, Seen] = {}
        self.unlogged = 0  # decisions the candidate made that the log does not have

    def choose(
        self,
        action_id: str,
        moment: str,
        arms: list[Scored],
        draw: Draw,
        resolve: ArmResolver,
    ) -> tuple[Scored | None, float]:
        spread = [
            (arm_of(arms[i] if i < len(arms) else None), p) for i, p in draw.distribution().items()
        ]
        log = self.logged.get(action_id)
        if log is None:
            # The logging policy made no decision here (or none this candidate knows): no
            # Action at all, as it made none (a protect would add suppressions it never had).
            self.unlogged += 1
            return None, NO_ACTION
        wanted = arm_of_action(log)
        propensity = float(log["propensity"])
        target = sum(p for arm, p in spread if arm == wanted)
        seen = Seen(moment, target, spread)
        self.seen[action_id] = seen
        if wanted == PROTECT:
            return None, propensity
        for arm in arms:
            if arm_of(arm) == wanted:
                return arm, propensity
        seen.forced = True
        _, channel, sku, frame, intensity = wanted
        forced = resolve(
            str(sku),
            relation_of(log.get("reasons") or (), log["play"]),
            channel,
            str(frame),
            intensity,
        )
        return forced, propensity

    def follow_up(self, action_id: str, wanted: bool) -> bool:
        return action_id in self.logged


class LoggedExperiments(Experiments):
    """Each customer's arms as their logged Actions recorded them (customers the log does
    not know are treated in everything)."""

    def __init__(self, policy: Policy, arms: Mapping[str, Mapping[str, str]]) -> None:
        super().__init__(policy)
        self.logged = arms
        self._treated = Assignment(False, frozenset(), frozenset(), {"holdout": "treated"})
        self._made: dict[frozenset[tuple[str, str]], Assignment] = {}

    def assign(self, customer_id: str) -> Assignment:
        arms = self.logged.get(customer_id)
        if arms is None:
            return self._treated
        key = frozenset(arms.items())
        found = self._made.get(key)
        if found is not None:
            return found
        assignment = Assignment(
            holdout=arms.get("holdout") == "held_out",
            held_out_plays=frozenset(
                k.split(":", 1)[1]
                for k, v in arms.items()
                if k.startswith("play_holdout:") and v == "held_out"
            ),
            suppressed_channels=frozenset(
                k.split(":", 1)[1]
                for k, v in arms.items()
                if k.startswith("suppress:") and v == "suppressed"
            ),
            arms=dict(arms),
        )
        self._made[key] = assignment
        return assignment
