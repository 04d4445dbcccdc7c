"""The engine's online models: P(accept), P(return), P(buying anyway), the order-value prior,
co-purchase affinity, and the exploration cells of app/bandit.py.

P(accept) learns from delivered offers, P(return) from accepted ones, and P(organic), the
chance a customer buys the offered item without being asked, only from holdout decisions:
what customers did when nothing was sent. All three are River logistic regressions whose first
feature is the policy's prior logit: before any outcome they predict exactly the prior, and each
outcome moves them from there. The prior enters scaled down by PRIOR_SCALE with weight
PRIOR_SCALE, so SGD moves its weight slowly relative to its size: a near-fixed offset that
recalibrates over many outcomes, while the other weights learn corrections. (Entered unscaled,
a few early successes turn the prior's weight negative and the model inverts.) Everything is
checkpointable to bytes, and `version` names the state: `<models_name>.<outcomes learned>`.

Every change of what is learned is an operation (`Models.change`: a name and JSON
arguments): applied at once, or, with a `sink`, recorded instead, for the one process
that learns (issue #10) to apply (`Models.apply`) while a decision worker's models stay as
loaded. Applied after a trip through JSON they teach exactly what direct changes do.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from river import linear_model, optim, stats

from app import codec
from app.anyway import AnywayCounts
from app.bandit import Cells
from app.distraction import CompletionCounts
from app.guardrail import UnsubscribeCounts

PRIOR = "prior"
PRIOR_SCALE = 10.0
BIAS = "bias"  # the intercept, learned as a feature (app/models.py OnlineLogit)
_TOP_AFFINITY = 12  # co-purchased SKUs remembered per SKU
_PAIR_ITEMS = 12  # distinct SKUs of one order used for pairs


def sigmoid(x: float) -> float:
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    z = math.exp(x)
    return z / (1.0 + z)


class OnlineLogit:
    """A River LogisticRegression that starts at a prior logit (feature `prior`).

    Outcomes are applied in mini-batches of `batch_size`: the weights, and so every cache of
    them, change once per batch rather than on every outcome. Queued outcomes are part of the
    state, so a checkpoint restores exactly what would have happened next.
    """

    def __init__(
        self,
        learning_rate: float = 0.1,
        l2: float = 1e-4,
        batch_size: int = 64,
        optimizer: str = "adagrad",
        memory: float = float("inf"),
    ) -> None:
        # AdaGrad: each feature's step shrinks with its own history, so rarely seen arms
        # (a channel, a frame) move quickly from the prior while common ones settle.
        opt = optim.AdaGrad(learning_rate) if optimizer == "adagrad" else optim.SGD(learning_rate)
        self.optimizer = optimizer
        # The intercept is learned as the feature `bias`, by the same optimizer as the other
        # weights: River's own intercept takes a constant SGD step per outcome, which moved the
        # level of every prediction by up to a logit per mini-batch and made the engine swing
        # between offering to everyone and to no one from one day to the next.
        self.model = linear_model.LogisticRegression(optimizer=opt, l2=l2, intercept_lr=0.0)
        self.model._weights[PRIOR] = PRIOR_SCALE
        self.batch_size = batch_size
        # AdaGrad's squared-gradient sums fade by this much per batch, so its steps never
        # shrink to nothing and the model keeps up when the world changes.
        self.fade = math.exp(-batch_size / memory)
        self.queue: list[tuple[dict[str, float], bool]] = []
        self.updates = 0  # outcomes applied to the weights

    @property
    def intercept(self) -> float:
        """The logit of a case whose other features are all 0."""
        return float(self.model.intercept + self.model._weights.get(BIAS, 0.0))

    def logit(self, x: Mapping[str, float]) -> float:
        """The model's logit (the intercept is added here, not taken from `x`)."""
        w = self.model._weights
        return self.intercept + float(sum(w[k] * v for k, v in x.items() if k in w and k != BIAS))

    def predict_one(self, x: Mapping[str, float]) -> float:
        return sigmoid(self.logit(x))

    def learn_one(self, x: Mapping[str, float], y: bool) -> None:
        self.queue.append(({**x, BIAS: 1.0}, bool(y)))
        if len(self.queue) >= self.batch_size:
            self.flush()

    def flush(self) -> None:
        """Apply every queued outcome now."""
        for x, y in self.queue:
            self.model.learn_one(x, y)
        self.updates += len(self.queue)
        self.queue = []
        g2 = getattr(self.model.optimizer, "g2", None)
        if g2 is not None and self.fade < 1.0:
            for key in g2:
                g2[key] *= self.fade

    def state(self) -> dict[str, Any]:
        optimizer = self.model.optimizer
        return {
            "weights": dict(self.model._weights),
            "intercept": self.model.intercept,
            "iterations": optimizer.n_iterations,
            "g2": dict(getattr(optimizer, "g2", {})),  # AdaGrad's squared-gradient sums
            "updates": self.updates,
            "queue": [[x, y] for x, y in self.queue],
        }

    def restore(self, state: Mapping[str, Any]) -> None:
        for name, value in state["weights"].items():
            self.model._weights[name] = value
        self.model.intercept = state["intercept"]
        optimizer = self.model.optimizer
        optimizer.n_iterations = state["iterations"]
        if hasattr(optimizer, "g2"):
            optimizer.g2.update(state.get("g2", {}))
        self.updates = state["updates"]
        self.queue = [(dict(x), bool(y)) for x, y in state.get("queue", [])]


def _ranked(row: dict[str, float], skus: Iterable[str] | None = None) -> list[str]:
    """The row's SKUs (or these of them), most often bought together first, then by SKU (a
    total order: ties never depend on insertion order). Two C-keyed sorts: by SKU, then by
    count, stably."""
    return sorted(sorted(row if skus is None else skus), key=row.__getitem__, reverse=True)


class Affinity:
    """What is bought together: per SKU, the SKUs most often in the same order."""

    def __init__(self) -> None:
        self.pairs: dict[str, dict[str, float]] = {}
        self._top: dict[str, list[str]] = {}  # sku -> ranked co-purchases (cache)
        # sku -> what was counted in its row since its top was ranked: only these can have
        # moved into the top (counts only grow until a trim, which ranks the row afresh)
        self._moved: dict[str, set[str]] = {}
        self.dirty: set[str] = set()  # rows changed since the last checkpoint

    def learn_order(self, skus: Iterable[str]) -> None:
        distinct = list(dict.fromkeys(skus))[:_PAIR_ITEMS]
        if len(distinct) < 2:
            return
        for a in distinct:
            row = self.pairs.setdefault(a, {})
            for b in distinct:
                if a != b:
                    row[b] = row.get(b, 0.0) + 1.0
            if len(row) > 4 * _TOP_AFFINITY:  # trimmed now and then, not on every order
                ranked = _ranked(row)[: 2 * _TOP_AFFINITY]
                self.pairs[a] = {b: row[b] for b in ranked}
                self._top[a] = ranked[:_TOP_AFFINITY]  # the trimmed row's top: `top`'s
                self._moved.pop(a, None)
            elif a in self._top:
                moved = self._moved.get(a)
                if moved is None:
                    moved = self._moved[a] = set()
                moved.update(distinct)  # (`a` too: left out when ranked)
            self.dirty.add(a)

    def top(self, sku: str, n: int) -> list[str]:
        """The `n` SKUs most often bought with `sku`, at most `_TOP_AFFINITY` (the same
        whether the ranking was cached, brought up to date or made afresh). An SKU outside the
        cached top whose count has not moved since is still below all of it: only the top and
        what moved are ranked again."""
        ranked = self._top.get(sku)
        if ranked is None:
            ranked = self._top[sku] = _ranked(self.pairs.get(sku, {}))[:_TOP_AFFINITY]
        else:
            moved = self._moved.pop(sku, None)
            if moved:
                moved.update(ranked)
                moved.discard(sku)
                ranked = self._top[sku] = _ranked(self.pairs[sku], moved)[:_TOP_AFFINITY]
        return ranked[:n]


class Models:
    """All learned state of one engine."""

    def __init__(
        self,
        name: str,
        batch_size: int = 64,
        prior_conversions: float = 6.0,
        prior_trials: float = 120.0,
        learning_rate: float = 0.1,
        optimizer: str = "adagrad",
        memory: float = float("inf"),
        cell_memory: float = float("inf"),
    ) -> None:
        self.name = name
        settings = {"batch_size": batch_size, "optimizer": optimizer, "memory": memory}
        self.accept = OnlineLogit(learning_rate, **settings)  # type: ignore[arg-type]
        self.returns = OnlineLogit(learning_rate, **settings)  # type: ignore[arg-type]
        self.organic = OnlineLogit(learning_rate, **settings)  # type: ignore[arg-type]
        self.order_value = stats.Mean()
        self.affinity = Affinity()
        self.cells = Cells(prior_conversions, prior_trials, cell_memory)
        self.anyway = AnywayCounts()  # what customers buy on their own (app/anyway.py)
        self.completion = CompletionCounts()  # purchases under way (app/distraction.py)
        self.unsubscribes = UnsubscribeCounts()  # the unsubscribe guardrail (app/guardrail.py)
        self.watermark = 0.0  # the latest event time the models have seen (not learned: each
        # worker's own, from its partitions' clocks)
        self.publication = 0  # with `tact learner`: which of its publications these models are
        self._version: tuple[tuple[int, int], str] = ((-1, -1), "")  # (what it counts, version)
        # Where the models' changes go (`change`): None, applied at once (replay, tests, one
        # process); else a callable given each change, as an operation a learner applies
        # (`apply`) where these models stay as loaded: the journal of a decision worker
        # whose models one process learns.
        self.sink: Callable[[tuple[Any, ...]], object] | None = None
        # The customer whose state the changes being made go with (the engine sets it): a
        # worker journals each change with its customer's input partition, in one
        # transaction with that customer's state.
        self.subject = ""
        self._ops: dict[str, Callable[..., None]] = {
            "accept": self.accept.learn_one,
            "returns": self.returns.learn_one,
            "organic": self.organic.learn_one,
            "cell": self.cells.update,
            "completion": self.completion.add,
            "order": self._order,
            "view": self.anyway.view,
            "view_bought": self.anyway.view_bought,
            "episode": self.anyway.episode,
            "watch": self.anyway.watch,
            "settle": self.anyway.settle,
            "arrived": self.unsubscribes.arrived,
            "message": self.unsubscribes.message,
            "unsubscribe": self.unsubscribes.unsubscribe,
        }

    def change(self, *op: Any) -> None:
        """One change of what is learned, as an operation: its name (`accept`, `cell`,
        `order`, `watch`, ...), then its arguments (JSON values). Applied now, or given to
        `sink`."""
        if self.sink is None:
            self._ops[op[0]](*op[1:])
        else:
            self.sink(op)

    def apply(self, op: Sequence[Any]) -> None:
        """Apply an operation `change` made (also one read back from JSON: lists for
        tuples), as the process that learns does."""
        name = op[0]
        if name not in self._ops:
            raise ValueError(f"not a change of the models: {name!r}")
        self._ops[name](*op[1:])

    def _order(self, total: float, skus: list[str]) -> None:
        self.order_value.update(total)
        self.affinity.learn_order(skus)

    @property
    def version(self) -> str:
        """`<name>.<outcomes learned>`, and `.v<publication>` for models a learner published
        (unique per publication: one that moved only counts moves no outcome)."""
        key = (self.accept.updates + self.returns.updates + self.organic.updates, self.publication)
        if key != self._version[0]:  # (read for every Action; it changes only as models learn)
            learned = f"{self.name}.{key[0]}"
            self._version = (key, f"{learned}.v{key[1]}" if key[1] else learned)
        return self._version[1]

    def aov_prior(self, fallback: float) -> float:
        return float(self.order_value.get()) if self.order_value.n else fallback

    def core_state(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "accept": self.accept.state(),
            "returns": self.returns.state(),
            "organic": self.organic.state(),
            "order_value": {"n": self.order_value.n, "mean": self.order_value.get()},
            "anyway": self.anyway.state(),
            "completion": self.completion.state(),
            "unsubscribes": self.unsubscribes.state(),
            "watermark": self.watermark,
        }

    def to_bytes(self) -> bytes:
        """Everything, in one blob (tests and files)."""
        return codec.dumps(
            {**self.core_state(), "affinity": self.affinity.pairs, "cells": self.cells.state()}
        )

    @classmethod
    def from_bytes(cls, blob: bytes, **settings: Any) -> Models:
        data = codec.loads(blob)
        return cls.from_fields(
            {
                "core": codec.dumps(data),
                "cells": codec.dumps(data.get("cells", {})),
                **{f"affinity:{sku}": codec.dumps(row) for sku, row in data["affinity"].items()},
            },
            **settings,
        )

    def changes(self) -> dict[str, bytes]:
        """What changed since the last call, as named fields for a store: the small core
        always, the exploration cells when they moved, and only the affinity rows that
        moved (a big catalog has thousands)."""
        fields = {"core": codec.dumps(self.core_state())}
        if self.cells.dirty:
            fields["cells"] = codec.dumps(self.cells.state())
            self.cells.dirty = False
        for sku in self.affinity.dirty:
            fields[f"affinity:{sku}"] = codec.dumps(self.affinity.pairs[sku])
        self.affinity.dirty = set()
        return fields

    @classmethod
    def from_fields(
        cls, fields: Mapping[str, bytes], base: Models | None = None, **settings: Any
    ) -> Models:
        """Models from checkpointed fields; `settings` are the constructor's (batch size,
        exploration priors, learning rate, optimizer). With `base`, `fields` are only what
        changed since it (`core` always): the cells and affinity rows not among them are
        `base`'s (the rows shared: a worker with a learner never changes them itself)."""
        core = codec.loads(fields["core"])
        models = cls(core["name"], **settings)
        models.watermark = core.get("watermark", 0.0)
        models.accept.restore(core["accept"])
        models.returns.restore(core["returns"])
        if "organic" in core:
            models.organic.restore(core["organic"])
        if "anyway" in core:
            models.anyway.restore(core["anyway"])
        if "completion" in core:
            models.completion.restore(core["completion"])
        if "unsubscribes" in core:
            models.unsubscribes.restore(core["unsubscribes"])
        if "cells" in fields:
            models.cells.restore(codec.loads(fields["cells"]))
        elif base is not None:
            models.cells.restore(base.cells.counts)
        ov = core["order_value"]
        models.order_value.n = ov["n"]
        models.order_value._mean = ov["mean"]
        prefix = "affinity:"
        pairs = models.affinity.pairs = {
            name[len(prefix) :]: dict(codec.loads(blob))
            for name, blob in fields.items()
            if name.startswith(prefix)
        }
        if base is not None:
            before = base.affinity
            for sku, row in before.pairs.items():
                if sku not in pairs:
                    pairs[sku] = row
                    if sku in before._top and sku not in before._moved:  # (its ranking too)
                        models.affinity._top[sku] = before._top[sku]
        return models
