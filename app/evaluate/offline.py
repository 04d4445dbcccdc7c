"""`tact evaluate`: what a candidate policy would have earned on logged decisions.

The candidate's engine replays the events in follow mode (app/evaluate/follow.py): at every
logged decision it works out its own probability of the logged action, then takes it, so
its state stays the logged one. Rewards come from the logged Outcomes: `profit` (what the
Action is credited with: the offered item's margin when it was the last touch, less returns
and costs) by default, or `window_profit` (the customer's whole margin in the window, less
the Action's costs). Holdout decisions are left out (nothing was delivered, whatever was
chosen).

Two limits, measured in the simulator (README, "Evaluating a policy change"): a window's
margin counts in every overlapping decision, so `window_profit` per decision can rank
policies differently from their total profit (attributed `profit` ranked them right); and
the candidate learns from the logged outcomes, so a candidate that explores less is valued
as if it had the logging policy's exploration to learn from.

The reward model of the doubly robust estimator is a table of mean rewards by (moment, play,
channel), falling back to coarser keys when a cell is thin, fitted on the other half of the
customers than the decision it predicts (cross-fitting), so it never sees its own answer.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from hashlib import blake2b
from typing import Any

from app import codec
from app.actions import action_id, encode
from app.catalog import Catalog
from app.decode import decode_event
from app.engine import DecisionEngine
from app.errors import BadInput
from app.evaluate.estimators import Unit, estimate
from app.evaluate.follow import FollowChooser, LoggedExperiments, arm_of_action
from app.policy import Policy

REWARDS = ("profit", "window_profit")
_MIN_CELL = 20


@dataclass(slots=True)
class Evaluation:
    figures: dict[str, Any]
    units: list[Unit]
    ids: list[str]  # the logged action of each unit
    skipped: Counter[str] = field(default_factory=Counter)
    replayed_actions: list[bytes] = field(default_factory=list)


def _fold(customer: str) -> int:
    return blake2b(customer.encode(), digest_size=1).digest()[0] & 1


class RewardModel:
    """Mean reward by (moment, play, channel), per fold of customers."""

    def __init__(self) -> None:
        self.sums: dict[tuple[int, tuple[str, ...]], list[float]] = defaultdict(lambda: [0.0, 0])

    def add(self, customer: str, moment: str, play: str, channel: str, reward: float) -> None:
        fold = _fold(customer)
        for key in ((moment, play, channel), (moment, play), (play,), ()):
            cell = self.sums[(fold, key)]
            cell[0] += reward
            cell[1] += 1

    def predict(self, customer: str, moment: str, play: str, channel: str) -> float:
        """From the other fold: the finest cell with enough decisions."""
        other = 1 - _fold(customer)
        for key in ((moment, play, channel), (moment, play), (play,), ()):
            total, n = self.sums.get((other, key), (0.0, 0))
            if n >= _MIN_CELL or (key == () and n):
                return float(total) / float(n)
        return 0.0


def evaluate(
    candidate: Policy,
    catalog: Catalog,
    actions: Iterable[bytes],
    outcomes: Iterable[bytes],
    events: Iterable[bytes],
    seed: int = 0,
    reward: str = "profit",
    keep_actions: bool = False,
) -> Evaluation:
    if reward not in REWARDS:
        raise ValueError(f"reward must be one of {REWARDS}")
    skipped: Counter[str] = Counter()
    logged: dict[str, dict[str, Any]] = {}
    arms: dict[str, dict[str, str]] = {}
    for line in actions:
        record = _record(line, skipped, "actions")
        if record is None or "action_id" not in record or "propensity" not in record:
            continue
        logged[record["action_id"]] = record
        arms.setdefault(record["customer_id"], dict(record.get("experiments") or {}))
    rewards: dict[str, float] = {}
    for line in outcomes:
        record = _record(line, skipped, "outcomes")
        if record is not None and isinstance(record.get(reward), int | float):
            rewards[record["action_id"]] = float(record[reward])
    chooser = FollowChooser(logged)
    engine = DecisionEngine(
        catalog, candidate, seed, chooser=chooser, experiments=LoggedExperiments(candidate, arms)
    )
    replayed: list[bytes] = []
    for line in events:
        if not line.strip():
            continue
        try:
            event = decode_event(line.rstrip(b"\r\n"))
        except BadInput:
            skipped["events"] += 1
            continue
        for action in engine.process_event(event):
            if keep_actions:
                replayed.append(encode(action))
        engine.take_outcomes()
    engine.flush()
    units, ids, counts = _units(chooser, logged, rewards)
    figures = estimate(units, seed) if units else {}
    figures.update(counts)
    figures["reward"] = reward
    figures["candidate"] = candidate.version
    return Evaluation(figures, units, ids, skipped, replayed)


def _chosen(action: dict[str, Any]) -> bool:
    """Whether the Action was a choice among arms (not a follow-up of one, nor the restraint a
    return or a support contact calls for)."""
    reasons = action.get("reasons") or ()
    if "seq:followup" in reasons:
        return False
    return not (reasons and str(reasons[0]).startswith("protect:"))


def _record(line: bytes, skipped: Counter[str], name: str) -> dict[str, Any] | None:
    if not line.strip():
        return None
    try:
        value = codec.loads(line)
    except codec.JSONDecodeError:
        skipped[name] += 1
        return None
    if not isinstance(value, dict):
        skipped[name] += 1
        return None
    return value


def _with_followups(
    logged: dict[str, dict[str, Any]], rewards: dict[str, float]
) -> dict[str, float]:
    """Rewards by decision, a follow-up's (the email after an onsite offer, chosen with it and
    logged with its propensity) added to the decision it follows: that arm earned both."""
    total = dict(rewards)
    for aid, log in logged.items():
        reasons = log.get("reasons") or ()
        if "seq:followup" not in reasons or aid not in rewards or log.get("holdout"):
            continue
        source = log.get("source_event_id")
        parent = action_id(log["customer_id"], source, "decision") if source else None
        if parent in total:
            total[parent] += rewards[aid]
    return total


def _units(
    chooser: FollowChooser, logged: dict[str, dict[str, Any]], rewards: dict[str, float]
) -> tuple[list[Unit], list[str], dict[str, Any]]:
    model = RewardModel()
    rows = []
    holdout = no_outcome = 0
    rewards = _with_followups(logged, rewards)
    for aid, seen in chooser.seen.items():
        log = logged[aid]
        if log.get("holdout"):
            holdout += 1
            continue
        if aid not in rewards:
            no_outcome += 1
            continue
        rows.append((aid, seen, log))
        model.add(log["customer_id"], seen.moment, log["play"], log["channel"], rewards[aid])
    units = []
    top_match = forced = 0
    for aid, seen, log in rows:
        cid, moment = log["customer_id"], seen.moment
        logged_arm = arm_of_action(log)
        units.append(
            Unit(
                customer=cid,
                reward=rewards[aid],
                propensity=float(log["propensity"]),
                target=seen.target,
                rhat=model.predict(cid, moment, log["play"], log["channel"]),
                dm=sum(p * model.predict(cid, moment, a[0], a[1]) for a, p in seen.distribution),
            )
        )
        if seen.distribution:
            top_match += max(seen.distribution, key=lambda ap: ap[1])[0] == logged_arm
        forced += seen.forced
    decisions = [aid for aid, a in logged.items() if not a.get("holdout") and _chosen(a)]
    counts = {
        "logged_actions": len(logged),
        "holdout_left_out": holdout,
        "without_outcome": no_outcome,
        "forced": forced,
        "candidate_top_matches": top_match,
        "unlogged_candidate_decisions": chooser.unlogged,
        "not_reached": sum(1 for aid in decisions if aid not in chooser.seen),
    }
    return units, [aid for aid, _, _ in rows], counts
