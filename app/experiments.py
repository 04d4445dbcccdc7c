"""Experiments: which customers are held out or have a channel suppressed, drawn by hash.

Three kinds, each assigned per customer from a hash of the customer id and a salt, so the
assignment is the same on every machine, in every run and after every restart:

    holdout                    the global control group: decisions are made and recorded with
                               `holdout: true`, nothing is ever delivered
    play_holdout:<play>        this play is decided as usual but never delivered
    suppress:<channel>         this channel is closed to the customer (what does it add?)

Every Action records the customer's arm in each (`experiments`), so any analysis can split
on them without knowing the salts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from mypy_extensions import mypyc_attr

from app.holdout import in_holdout
from app.policy import Policy

_CACHE_LIMIT: Final = 100_000


@dataclass(frozen=True, slots=True)
class Assignment:
    """One customer's arms."""

    holdout: bool  # the global control group
    held_out_plays: frozenset[str]
    suppressed_channels: frozenset[str]
    arms: dict[str, str]  # experiment -> arm, as recorded on Actions (shared: never modify)

    def held_out(self, play: str) -> str | None:
        """The reason code when an action of `play` must not be delivered, else None."""
        if self.holdout:
            return "holdout:global"
        if play in self.held_out_plays:
            return f"holdout:play:{play}"
        return None


@mypyc_attr(allow_interpreted_subclasses=True)  # subclassed outside the compiled core
class Experiments:
    """Assigns customers to the policy's experiments."""

    def __init__(self, policy: Policy) -> None:
        self.holdout = policy.holdout
        spec = policy.experiments
        self.salt = spec.salt
        self.play_holdouts = dict(spec.play_holdouts)
        self.channel_suppression = dict(spec.channel_suppression)
        self._cache: dict[str, Assignment] = {}
        self._interned: dict[tuple[bool, frozenset[str], frozenset[str]], Assignment] = {}

    def assign(self, customer_id: str) -> Assignment:
        found = self._cache.get(customer_id)
        if found is not None:
            return found
        holdout = in_holdout(customer_id, self.holdout.salt, self.holdout.share)
        plays = frozenset(
            play
            for play, share in self.play_holdouts.items()
            if in_holdout(customer_id, f"{self.salt}:play:{play}", share)
        )
        channels = frozenset(
            channel
            for channel, share in self.channel_suppression.items()
            if in_holdout(customer_id, f"{self.salt}:suppress:{channel}", share)
        )
        key = (holdout, plays, channels)
        assignment = self._interned.get(key)
        if assignment is None:
            arms = {"holdout": "held_out" if holdout else "treated"}
            for play in sorted(self.play_holdouts):
                arms[f"play_holdout:{play}"] = "held_out" if play in plays else "treated"
            for channel in sorted(self.channel_suppression):
                arms[f"suppress:{channel}"] = "suppressed" if channel in channels else "allowed"
            assignment = self._interned[key] = Assignment(holdout, plays, channels, arms)
        if len(self._cache) >= _CACHE_LIMIT:
            self._cache.clear()
        self._cache[customer_id] = assignment
        return assignment
