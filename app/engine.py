"""The decision engine: events in, Actions out, per-customer readiness kept in between.

    engine = DecisionEngine.from_files("catalog.jsonl", policy_path=None, seed=0)
    actions = engine.process({"event_id": "e1", "type": "add_to_cart", ...})

Pure: no I/O beyond reading the two files, event time only. The same events in the same order
with the same catalog, policy and seed give the same Actions, byte for byte (app.actions.encode).
Every Action opens an attribution window; when one closes, its Outcome record waits in
`take_outcomes()` (app/attribution.py). The worker and `tact replay` both drive this class; the
worker also saves and restores customer states (`dump`/`restore`) and the models
(`models_changes`/`restore_models`) in its checkpoint.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, Final

import zstandard
from mypy_extensions import mypyc_attr

from app import codec
from app.anyway import Anyway
from app.arbitration import Arbiter
from app.attribution import Attribution, share_text
from app.catalog import Catalog
from app.decisions import Chooser, Decider, Decision
from app.decode import validate_object
from app.experiments import Experiments
from app.learning import Learner
from app.models import Models
from app.observe import ReadinessTracker
from app.policy import Policy, load_policy
from app.readiness import CustomerState
from app.sequencing import Sequencer
from schemas import (
    Action,
    Envelope,
    MessageFeedback,
    OfferFeedback,
    OrderPlaced,
    OrderReturned,
    Outcome,
    PageView,
    Refund,
)

# The cold tier's dictionary: trained on the first states in line to go cold (else, when they
# are too few or too alike for zstd to train on, the largest of them as they are)
_COLD_SAMPLE: Final = 256
_COLD_DICT_STATES: Final = 4
_COLD_DICT_MAX: Final = 32 * 1024
_COLD_LEVEL: Final = 3


@mypyc_attr(allow_interpreted_subclasses=True)  # subclassed outside the compiled core
class DecisionEngine:
    """Readiness, models, the referee and arbitration behind one `process` call."""

    def __init__(
        self,
        catalog: Catalog,
        policy: Policy | None = None,
        seed: int = 0,
        chooser: Chooser | None = None,
        experiments: Experiments | None = None,
    ) -> None:
        self.catalog = catalog
        self.policy = policy if policy is not None else load_policy(None)
        self.seed = seed  # exploration draws are hashed from it and the action id
        self.chooser = chooser if chooser is not None else Chooser(seed)
        self.experiments = experiments  # None: the policy's (app/experiments.py)
        self.customers: dict[str, CustomerState] = {}
        # Customers kept as their saved bytes, compressed (`trim`'s cold tier: about a
        # quarter of the memory of a state, and nothing for the garbage collector to walk),
        # made a state again when next needed (`get`): at their next event, or when the
        # attribution schedule reaches one of their windows, which stay on it meanwhile.
        self.cold: dict[str, bytes] = {}
        # their compressor and decompressor, with a dictionary of their own (`_freeze`)
        self._packer: zstandard.ZstdCompressor | None = None
        self._unpacker: zstandard.ZstdDecompressor | None = None
        # Customers made states again from bytes (cold, or loaded) since the last `trim`: most
        # only to close a window of theirs (they may not come back for weeks)
        self._thawed: list[str] = []
        self.duplicates = 0  # events skipped because their id came again (producer retries)
        # events naming a SKU the catalog lacks (decided on all the same: nothing is offered
        # around an unknown item); many of them mean the events and the catalog disagree
        self.unknown_sku_events = 0
        self.unknown_sku_example = ""
        # Event time per input partition (the worker's sources): the watermark that closes
        # attribution windows is their minimum, so one partition's clock (ahead, or read
        # ahead of a backlog elsewhere) never closes the windows of another's customers.
        self.clocks: dict[int, float] = {}
        self.models = self._new_models()
        self._wire()

    def _model_settings(self) -> dict[str, Any]:
        p = self.policy
        return {
            "batch_size": p.learning.batch_size,
            "prior_conversions": p.exploration.prior_conversions,
            "prior_trials": p.exploration.prior_trials,
            "learning_rate": p.learning.rate,
            "optimizer": p.learning.optimizer,
            "memory": p.learning.memory,
            "cell_memory": p.exploration.memory,
        }

    def _new_models(self) -> Models:
        return Models(self.policy.models_name, **self._model_settings())

    def _wire(self) -> None:
        self.tracker = ReadinessTracker(self.policy, self.catalog)
        prior = self.policy.priors.anyway
        self.anyway = Anyway(
            self.catalog,
            self.models.anyway,
            prior.horizon_days,
            prior.follow_on,
            prior.refill,
            prior.view_to_buy,
            prior.strength,
            self.policy.learning.enabled,
            self.models.change,
        )
        self.arbiter = Arbiter(self.policy, self.models, self.anyway)
        self.learner = Learner(self.policy, self.models)
        self.attribution = Attribution(self.policy, self.catalog, self.models, self.learner)
        sequencer = Sequencer(self.policy, self.models, self.attribution, self.arbiter.economics)
        self.decider = Decider(
            self.policy,
            self.catalog,
            self.models,
            self.arbiter,
            self.tracker,
            sequencer,
            self.chooser,
            self.experiments,
        )

    @classmethod
    def from_files(
        cls, catalog_path: str | Path, policy_path: str | Path | None = None, seed: int = 0
    ) -> DecisionEngine:
        """An engine on a catalog JSONL file and a policy YAML file (None: the default)."""
        return cls(Catalog.from_jsonl(catalog_path), load_policy(policy_path), seed)

    @property
    def on_decision(self) -> Callable[[Decision], None] | None:
        return self.decider.on_decision

    @on_decision.setter
    def on_decision(self, hook: Callable[[Decision], None] | None) -> None:
        """Called with every decision's candidates, drops and choice (for explanations);
        while set, every candidate is kept, not only the best (slower)."""
        self.decider.on_decision = hook
        self.arbiter.keep_all = hook is not None

    # -- decisions ------------------------------------------------------------------------------
    def process(self, event: dict[str, Any]) -> list[Action]:
        """Validate a raw event and decide; raises BadInput for an invalid event."""
        return self.process_event(validate_object(event))

    def process_event(self, event: Envelope, source: int | None = None) -> list[Action]:
        """Fold `event` into its customer's state and decide. An event whose id is among the
        customer's last few is a duplicate: nothing happens (counted in `duplicates`). Nothing
        here depends on when the event is processed: an event redelivered after any delay is
        decided the same (a worker that lagged marks stale Actions at its edge,
        `actions.expire_stale`). `source` is the input partition the event came from (the
        worker's; a replay has one clock and passes none)."""
        t = event.ts.timestamp()
        cid = event.customer_id
        models = self.models
        models.subject = cid
        state = self.customers.get(cid)
        budget = self.arbiter.budget
        if state is None and self.cold:
            state = self.get(cid)
        if state is None:
            state = self.customers[cid] = CustomerState()
            budget.arrived(t)
        if state.seen_before(event.event_id):
            self.duplicates += 1
            return []
        budget.tick(t)
        attribution = self.attribution
        attribution.advance(t if source is None else self._clock(source, t), self)
        models.subject = cid  # (the watermark may have closed others' windows)
        attribution.close_due(cid, state, t)
        if state.consumables:
            self.anyway.lapses(state, t)
        sku = event.__dict__.get("sku")  # (getattr on a model without it raises inside)
        if sku is not None and sku not in self.catalog:
            self._unknown(sku)
        if isinstance(event, OrderPlaced):
            skus = [item.sku for item in event.items]
            unknown = next((s for s in skus if s not in self.catalog), None)
            if unknown is not None:
                self._unknown(unknown)
            self.anyway.ordered(state, skus, t, attribution.offered(state, t))
            attribution.ordered(cid, state, event, t)
            if self.learner.enabled:
                models.change("order", event.total, skus)
        elif isinstance(event, OrderReturned):
            attribution.returned(state, event, t)
            self.anyway.returned(state, [item.sku for item in event.items])
        elif isinstance(event, Refund):
            attribution.refunded(state, event, t)
        elif isinstance(event, OfferFeedback):
            attribution.feedback(cid, state, event.kind, t, event.action_id, None)
        elif isinstance(event, MessageFeedback):
            charged = attribution.feedback(
                cid, state, event.kind, t, event.action_id, event.channel
            )
            if charged is not None:  # once per Action, on the Action's channel
                budget.unsubscribe(charged, t)
        elif isinstance(event, PageView) and event.sku:
            self.anyway.viewed(state, event.sku)
        self.tracker.update(state, event, t)
        actions = self.decider.decide(cid, state, event, t)
        for action in actions:
            if not action.holdout and action.play != "protect":
                budget.message(action.channel)
        return actions

    def _clock(self, source: int, t: float) -> float:
        """Move `source`'s clock to `t`; the watermark: the earliest of the clocks."""
        clocks = self.clocks
        if t > clocks.get(source, float("-inf")):
            clocks[source] = t
        return min(clocks.values())

    def set_clocks(self, clocks: Mapping[int, float]) -> None:
        """The input partitions' clocks as checkpointed (only those this worker owns); the
        watermark becomes their minimum (0 when none has one yet), whatever the models were
        saved with (another worker's clocks)."""
        self.clocks = dict(clocks)
        self.models.watermark = min(self.clocks.values(), default=0.0)

    def _unknown(self, sku: str) -> None:
        self.unknown_sku_events += 1
        self.unknown_sku_example = self.unknown_sku_example or sku

    # -- outcomes -------------------------------------------------------------------------------
    def close_behind(self, limit: int | None) -> None:
        """Close up to `limit` (None: all) of the windows the watermark passed that still wait
        to be closed, and bound the closings of the events that follow by what is left of
        `limit` (the worker's bound per batch)."""
        self.attribution.close_limit = limit
        self.attribution.advance(self.models.watermark, self)

    def settle(self, customer_ids: Iterable[str]) -> None:
        """Close the windows of these customers (in memory) that the watermark passed and a
        bound on closings left open (before their states are saved), customer by customer in
        order of id: the models learn in the same order whatever order the ids come in (the
        worker's are a set, whose order changes with the process's string hashing)."""
        owes = self.attribution.owes
        for cid in sorted(c for c in customer_ids if owes(c)):
            state = self.get(cid)
            if state is not None:
                self.attribution.close_due(cid, state, -math.inf)

    def behind(self) -> bool:
        """Whether windows the watermark passed wait to be closed (left by a bound)."""
        return self.attribution.behind()

    def take_outcomes(self) -> list[Outcome]:
        """The Outcome records whose windows closed since the last call, in closing order."""
        return self.attribution.take()

    def flush(self, t: float | None = None) -> list[Outcome]:
        """The stream has ended: close every open window as `censored` (at `t`, default the
        latest event time seen) and return all Outcomes not yet taken."""
        for cid in list(self.cold):
            self.get(cid)
        self.attribution.flush(self.customers, self.models.watermark if t is None else t)
        return self.take_outcomes()

    # -- state, for the worker's store ------------------------------------------------------------
    def knows(self, customer_id: str) -> bool:
        """Whether the customer's state is in memory (as a state, or cold as bytes)."""
        return customer_id in self.customers or customer_id in self.cold

    def get(self, customer_id: str) -> CustomerState | None:
        """The customer's state, made again from its bytes if it was cold (None: not in
        memory). A cold customer's windows stayed on the attribution schedule, which closes
        them through this as a state's."""
        state = self.customers.get(customer_id)
        if state is None:
            blob = self.cold.pop(customer_id, None)
            if blob is not None:
                state = self._load(customer_id, self._thaw(blob))
        return state

    def _load(self, customer_id: str, blob: bytes) -> CustomerState:
        """A state made again from the bytes `dump` gave (a cold one's, or the store's), kept
        among the states and noted for `trim`."""
        state = self.customers[customer_id] = CustomerState.from_bytes(blob)
        share_text(state)
        self._thawed.append(customer_id)
        return state

    def _freeze(self, blobs: dict[str, bytes]) -> dict[str, bytes]:
        """Saved states compressed for the cold tier (zstd) with a dictionary trained on the
        first states in line to go cold, whose keys, SKUs, versions and shapes most states
        repeat: 3.3 KB -> 0.71 KB on the generated stream in 17 us, where zlib with the largest
        states as its preset dictionary gave 1.0 KB in 35 us (README "The cold tier in zstd").
        The bytes never leave this engine, so the dictionary is its own."""
        packer = self._packer
        if packer is None:
            packer = self._packer = self._new_packer()
        # (copied: the bytes zstd returns keep the allocation of the bound it compressed into,
        # the size of the state, and its freed tail is seldom used again: 3.3 KB a customer)
        return {cid: codec.exact(packer.compress(blob)) for cid, blob in blobs.items()}

    def _new_packer(self) -> zstandard.ZstdCompressor:
        sample: list[bytes | bytearray | memoryview] = [
            s.to_bytes() for s in itertools.islice(self.customers.values(), _COLD_SAMPLE)
        ]
        try:
            trained = zstandard.train_dictionary(_COLD_DICT_MAX, sample)
        except zstandard.ZstdError:  # (too few, or too small, to train on)
            largest = sorted(map(bytes, sample), key=len, reverse=True)[:_COLD_DICT_STATES]
            trained = zstandard.ZstdCompressionDict(
                b"".join(largest)[-_COLD_DICT_MAX:], dict_type=zstandard.DICT_TYPE_RAWCONTENT
            )
        self._unpacker = zstandard.ZstdDecompressor(dict_data=trained)
        return zstandard.ZstdCompressor(
            level=_COLD_LEVEL, dict_data=trained, write_checksum=False, write_dict_id=False
        )

    def _thaw(self, blob: bytes) -> bytes:
        assert self._unpacker is not None  # (made with the first `_freeze`'s packer)
        return self._unpacker.decompress(blob)

    def restore(self, blobs: Mapping[str, bytes]) -> None:
        """Load saved customer states. If the watermark has moved since a state was saved,
        its windows that ended before the watermark close now, as they would have in memory
        (an order the customer placed before a window's end, processed after the watermark
        passed it, must not count in it); a window that had already ended when it was saved
        (made for an event older than the watermark) stays open until the watermark moves,
        as in memory. The others are rescheduled. Their Outcomes wait in `take_outcomes()`.
        Loaded in order of id: what closes, and so what the models learn next, must not
        depend on the order the worker asked for them (a set's, which changes with the
        process's string hashing)."""
        watermark = self.models.watermark
        for customer_id, blob in sorted(blobs.items()):
            state = self._load(customer_id, blob)
            if watermark > state.saved_at:
                self.attribution.close_due(customer_id, state, watermark)
            self.attribution.reopen(customer_id, state)

    def dump(self, customer_ids: Iterable[str]) -> dict[str, bytes]:
        watermark = self.models.watermark
        out = {}
        for cid in customer_ids:
            state = self.customers[cid]
            state.saved_at = watermark
            out[cid] = state.to_bytes()
        return out

    def trim(
        self,
        recent: Iterable[str],
        limit: int,
        hot: int | None = None,
        saved: Mapping[str, bytes] | None = None,
    ) -> list[str]:
        """Keep at most `limit` customers in memory, least recently used first out; `recent`
        were just used. Of those kept, at most `hot` stay states (None: all): the others are
        kept cold, as the bytes `dump` gives (`saved`: what it gave for some of them, which
        have not changed since), until `get`. Those made states again since the last call
        (`get`, `restore`) and not in `recent` (to close a window) go cold first. Only call
        when every state is saved elsewhere. Returns the customers dropped."""
        customers = self.customers
        recent = list(recent)
        used = set(recent)
        for cid in recent:
            state = customers.pop(cid, None)
            if state is not None:  # dicts keep insertion order: move to the end
                customers[cid] = state
        thawed, self._thawed = self._thawed, []
        if hot is not None and len(customers) > hot:
            over = len(customers) - hot
            passing = [c for c in dict.fromkeys(thawed) if c in customers and c not in used]
            del passing[over:]
            first = set(passing)
            # then the least recently used, from the front (a loop: mypyc makes a generator
            # expression a list, and islice over it listed every state at each batch)
            frozen = passing
            if len(frozen) < over:
                for cid in customers:
                    if cid not in first:
                        frozen.append(cid)
                        if len(frozen) >= over:
                            break
            saved = saved or {}
            made = self.dump([c for c in frozen if c not in saved])
            blobs = {cid: saved[cid] if cid in saved else made[cid] for cid in frozen}
            for cid, blob in self._freeze(blobs).items():
                self.cold[cid] = blob
                del customers[cid]
        cold = self.cold
        over = len(customers) + len(cold) - limit
        dropped = list(itertools.islice(cold, max(over, 0)))
        for cid in dropped:
            del cold[cid]
        if over > len(dropped):
            more = list(itertools.islice(customers, over - len(dropped)))
            for cid in more:
                del customers[cid]
            dropped += more
        return dropped

    def drop(self, customer_ids: Iterable[str]) -> None:
        """Forget these customers' states (saved elsewhere; e.g. their partition moved to
        another worker). Like `trim`, their windows close when they are loaded again."""
        for cid in customer_ids:
            self.customers.pop(cid, None)
            self.cold.pop(cid, None)

    def next_window_end(self, customer_id: str) -> float | None:
        """When the customer's earliest open attribution window is due to close (None: none
        open): its end, or just after the watermark for a window that ended before it (it
        closes when the watermark moves)."""
        state = self.customers.get(customer_id)
        if state is None or not state.windows:
            return None
        end = float(min(entry[3] for entry in state.windows))
        watermark = self.models.watermark
        return end if end >= watermark else math.nextafter(watermark, math.inf)

    def models_changes(self) -> dict[str, bytes]:
        """The models' state that changed since the last call (for the worker's checkpoint)."""
        return self.models.changes()

    def reset(self) -> None:
        """Drop everything learned or cached since the models and states were last saved:
        customer states, models, open windows and Outcomes not yet taken (the caller reloads
        them from the checkpoint)."""
        hook = self.on_decision
        self.customers.clear()
        self.cold.clear()
        self._thawed.clear()
        self.clocks = {}
        self.models = self._new_models()
        self._wire()
        self.on_decision = hook

    def restore_models(self, fields: Mapping[str, bytes], changed_only: bool = False) -> None:
        """Continue from checkpointed models (from `models_changes` fields, merged); with
        `changed_only`, the fields are what changed since the models in use (a learner's
        newer publication: app/models.py `Models.from_fields`)."""
        if "core" not in fields:
            return
        hook = self.on_decision
        before = self.attribution
        waiting = self.take_outcomes()
        base = self.models if changed_only else None
        self.models = Models.from_fields(fields, base, **self._model_settings())
        self._wire()
        self.attribution.requeue(waiting)
        # the customers in memory keep their windows: their schedule carries over (a worker
        # swapping in published models may hold 100,000; reopening 60,000 took 25-30 ms)
        self.attribution.take_schedule(before)
        self.on_decision = hook
