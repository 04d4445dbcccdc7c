"""The connector SDK: from the `actions` topic to a channel, by the connector contract.

A connector is a `deliver(action)` for one or more channels. The runner does the rest:

    subscribe     `actions`, in the consumer group `tact-connector-<name>`
    skip          holdout Actions (recorded for measurement, never delivered) and Actions
                  past `expires_at`
    quiet hours   an Action's `quiet_hours` (the customer's, on outbound channels) are checked
                  again at delivery by the connector's clock: one that comes due inside them
                  (a lagging connector, a receiver outage) waits in Redis until they end, or is
                  skipped if it expires first
    wait          for `not_before`, and for the log to be read up to it: an Action is delivered
                  only once this partition has been read past its `not_before` (by record
                  time) or to its end, so a suppression decided before it was due is always
                  seen first, even by a connector that lags; waiting Actions are kept in Redis
                  (a sorted set by due time per partition, a hash per customer), so a restart
                  loses none
    cancel        a later Action's `suppress` entries cancel the customer's waiting Actions on
                  those channels due before `until` (whatever channel the later Action is for)
    deduplicate   an `action_id` delivered once is never delivered again (a Redis mark written
                  after each delivery); deliveries also carry the action_id as idempotency key
    retry         transient failures: a few quick tries, then the Action waits in Redis with the
                  others (backoff doubling to 5 minutes) and while the receiver is down new
                  Actions wait behind it instead of hammering it; only a failure that lasts
                  longer than `retry_for_s` (6 hours by default), an Action that expires while
                  it fails, or a permanent failure goes to the connector dead-letter topic, with
                  the reason in headers (and a log line); SIGTERM never waits for an outage
    receipts      each delivery sends `message_feedback` (delivered) back to `clickstream`,
                  and each Action of ours that expired undelivered one of kind `expired`, so
                  the engine learns what reached whom: written to a Redis outbox before the
                  delivery's mark, and removed only once the broker has it (a repeat is
                  possible after a kill, with the same event_id, which the engine drops)

Offsets are committed only once every Action read is delivered, waiting in Redis, dead-lettered
or skipped: a connector killed at any point redelivers what it had not finished, and the mark
makes a redelivered Action a no-op. The one window left is a kill between a delivery and its
mark; the idempotency key lets the receiver drop that repeat.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from app import codec
from app.actions import after_quiet
from app.errors import TactError
from schemas.types import event_seconds as epoch

log = logging.getLogger(__name__)

MARK_TTL_S = 30 * 86400  # how long a delivered action_id is remembered
RECEIPT_CLAIM_S = 120.0  # a claimed receipt not confirmed by then is claimed again
# Claim up to ARGV[3] receipts: first those whose claim lapsed (KEYS[2], a sorted set by
# deadline), then the oldest of the outbox (KEYS[1]); each gets the deadline ARGV[2]. Atomic.
_CLAIM = """
local n = tonumber(ARGV[3])
local claimed = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[1], 'LIMIT', 0, n)
if #claimed < n then
  local fresh = redis.call('LRANGE', KEYS[1], 0, n - #claimed - 1)
  if #fresh > 0 then
    redis.call('LTRIM', KEYS[1], #fresh, -1)
    for _, r in ipairs(fresh) do table.insert(claimed, r) end
  end
end
for _, r in ipairs(claimed) do redis.call('ZADD', KEYS[2], ARGV[2], r) end
return claimed
"""


class DeliveryError(TactError):
    """A delivery failed. `transient` failures are retried; the others are dead letters."""

    def __init__(self, reason: str, transient: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.transient = transient


class Connector(Protocol):
    name: str
    channels: frozenset[str]

    def deliver(self, action: dict[str, Any]) -> None:
        """Deliver one Action; raise DeliveryError when it could not be."""
        ...


class Observer(Protocol):
    """A connector that also sees every Action read, of any channel (optional)."""

    def observe(self, action: dict[str, Any]) -> None: ...


@dataclass(slots=True)
class RunnerStats:
    delivered: int = 0
    duplicates: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    waiting: int = 0
    retrying: int = 0  # failures parked in Redis to be tried again
    cancelled: int = 0
    dead_letters: int = 0
    retries: int = 0

    def skip(self, why: str) -> None:
        self.skipped[why] = self.skipped.get(why, 0) + 1

    def line(self) -> str:
        """The counts in words, for a log line."""
        skipped = ", ".join(f"{n:,} {why}" for why, n in sorted(self.skipped.items()))
        return (
            f"{self.delivered:,} delivered, {self.duplicates:,} duplicates skipped, "
            f"{self.waiting:,} waited for their time, {self.retrying:,} waited for the "
            f"receiver, {self.cancelled:,} cancelled, "
            f"{self.dead_letters:,} dead letters, {self.retries:,} retries"
            + (f"; not delivered: {skipped}" if skipped else "")
        )


class Runner:
    """Applies the contract around one connector; I/O comes in as callables and a store, so
    the loop can run against Kafka and Redis (`run`, in app/connectors/run.py) or in tests."""

    def __init__(
        self,
        connector: Connector,
        store: Any,  # a redis.Redis (sets, sorted sets, hashes)
        dead_letter: Callable[[bytes | None, bytes, dict[str, str]], None],
        prefix: str,
        max_attempts: int = 3,
        backoff_s: float = 0.2,
        park_s: float = 5.0,
        max_park_s: float = 300.0,
        retry_for_s: float = 6 * 3600.0,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.connector = connector
        self.store = store
        self.dead_letter = dead_letter
        self.prefix = f"{prefix}:connector:{connector.name}"
        self.max_attempts = max_attempts  # quick tries in a row (a blip)
        self.backoff_s = backoff_s
        self.park_s = park_s  # then waits in Redis, doubling up to max_park_s
        self.max_park_s = max_park_s
        self.retry_for_s = retry_for_s  # a failure that lasts longer is a dead letter
        self.down_until = 0.0  # the receiver failed: new Actions wait until then
        self.clock = clock
        self.sleep = sleep
        self.stats = RunnerStats()
        self.read_to: dict[int, float] = {}  # partition -> latest record time read (seconds)
        self._claim: Any = None  # the receipts' claim script, registered on first use
        self.receipt_batch = 500  # receipts claimed at a time
        self.caught_up: set[int] = set()  # partitions handled to their end offset

    # -- keys ---------------------------------------------------------------------------------
    def _mark(self, action_id: str) -> str:
        return f"{self.prefix}:sent:{action_id}"

    def _due(self, partition: int) -> str:
        return f"{self.prefix}:due:{partition}"

    def _pending(self, customer: str) -> str:
        return f"{self.prefix}:pending:{customer}"

    @property
    def _retries(self) -> str:
        return f"{self.prefix}:retries"  # action_id -> its failures so far (JSON)

    @property
    def _outbox(self) -> str:
        return f"{self.prefix}:receipts"

    # -- the contract -------------------------------------------------------------------------
    def handle(
        self,
        key: bytes | None,
        value: bytes,
        partition: int = 0,
        timestamp_ms: int | None = None,
    ) -> None:
        """One record of `actions` (of `partition`, appended at `timestamp_ms`). Returns once
        it is delivered, waiting, dead or skipped."""
        if timestamp_ms is not None:
            self.read_to[partition] = max(self.read_to.get(partition, 0.0), timestamp_ms / 1000)
        try:
            action = codec.loads(value)
            customer, action_id, channel = (
                action["customer_id"],
                action["action_id"],
                action["channel"],
            )
        except (codec.JSONDecodeError, KeyError, TypeError):
            self.stats.dead_letters += 1
            self.dead_letter(key, value, {"reason": "not_an_action"})
            return
        for quiet in action.get("suppress") or ():
            self._cancel(customer, quiet["channel"], epoch(quiet["until"]))
        observe = getattr(self.connector, "observe", None)
        if observe is not None:
            observe(action)
        if channel not in self.connector.channels:
            return  # not ours (its suppressions still count)
        if action.get("holdout"):
            self.stats.skip("holdout")
            return
        now = self.clock()
        if epoch(action["expires_at"]) < now:
            self.stats.skip("expired")
            self._never_delivered(action)
            return
        due = epoch(action["not_before"])
        # Only what the log has shown so far counts here (the rest of this batch is unread).
        read_to = float("inf") if timestamp_ms is None else self.read_to.get(partition, 0.0)
        if due > min(now, read_to):
            self.store.hset(self._pending(customer), action_id, value)
            self.store.zadd(self._due(partition), {f"{customer}\x1f{action_id}": due})
            self.stats.waiting += 1
            return
        self._deliver(key, action, value, partition)

    def deliver_due(self, partitions: Iterable[int] = (0,), limit: int = 500) -> int:
        """Deliver the waiting Actions of these partitions that are due and read up to;
        returns how many were taken."""
        now = self.clock()
        taken = 0
        for partition in partitions:
            # Read to its end: anything due may go; else only what the log has passed.
            read_to = (
                float("inf") if partition in self.caught_up else self.read_to.get(partition, 0.0)
            )
            until = min(now, read_to)
            members = self.store.zrangebyscore(
                self._due(partition), "-inf", until, start=0, num=limit
            )
            for raw in members:
                member = raw.decode() if isinstance(raw, bytes) else str(raw)
                customer, action_id = member.split("\x1f", 1)
                value = self.store.hget(self._pending(customer), action_id)
                waiting = False
                if value is not None:
                    action = codec.loads(value)
                    if epoch(action["expires_at"]) < now:
                        self._expired(customer.encode(), action, value)
                    else:
                        waiting = self._deliver(customer.encode(), action, value, partition)
                if not waiting:  # only once it is settled: a kill before this delivers it again
                    self.store.hdel(self._pending(customer), action_id)
                    self.store.zrem(self._due(partition), member)
            taken += len(members)
        return taken

    def _cancel(self, customer: str, channel: str, until: float) -> None:
        waiting = self.store.hgetall(self._pending(customer)) or {}
        for raw_id, value in waiting.items():
            action = codec.loads(value)
            if action["channel"] == channel and epoch(action["not_before"]) < until:
                action_id = raw_id.decode() if isinstance(raw_id, bytes) else str(raw_id)
                self.store.hdel(self._pending(customer), action_id)
                self.store.hdel(self._retries, action_id)
                for due in self._due_keys():
                    self.store.zrem(due, f"{customer}\x1f{action_id}")
                self.stats.cancelled += 1

    def _due_keys(self) -> list[str]:
        return [self._due(p) for p in sorted({0, *self.read_to})]

    def _deliver(
        self, key: bytes | None, action: dict[str, Any], value: bytes, partition: int
    ) -> bool:
        """Deliver, dead-letter, or park it to be tried again; True when it is waiting."""
        action_id = action["action_id"]
        if self.store.exists(self._mark(action_id)):
            self.stats.duplicates += 1
            return False
        now = self.clock()
        quiet = action.get("quiet_hours")
        if quiet:  # decided for a time outside them; a lagging connector may reach them
            ends = after_quiet(now, quiet["utc_offset_minutes"], quiet["start"], quiet["end"])
            if ends > now:
                if ends > epoch(action["expires_at"]):
                    if self._failures(action_id):  # it waited for the receiver, then this
                        self._expired(key, action, value)
                    else:
                        self.stats.skip("quiet hours until it expired")
                        self._never_delivered(action)
                    return False
                self._park(action, value, partition, ends)
                self.stats.waiting += 1
                return True
        if now < self.down_until:  # the receiver failed moments ago: wait behind it
            self._park(action, value, partition, self.down_until)
            return True
        delay = self.backoff_s
        for attempt in range(1, self.max_attempts + 1):
            try:
                self.connector.deliver(action)
            except DeliveryError as exc:
                failed = self._failures(action_id)
                attempts = int(failed.get("attempts", 0)) + attempt
                if not exc.transient:
                    self._dead(key, value, action_id, exc.reason, attempts)
                    return False
                self.stats.retries += 1
                if attempt < self.max_attempts:
                    self.sleep(delay)
                    delay *= 2
                    continue
                return self._retry_later(
                    key, action, value, partition, exc.reason, attempts, failed
                )
            self.store.rpush(self._outbox, codec.dumps(self._receipt_of(action)))
            self.store.set(self._mark(action_id), b"1", ex=MARK_TTL_S)
            self.store.hdel(self._retries, action_id)
            self.down_until = 0.0
            self.stats.delivered += 1
            return False
        return False  # not reached: the last attempt returns or waits

    def _failures(self, action_id: str) -> dict[str, Any]:
        raw = self.store.hget(self._retries, action_id)
        return dict(codec.loads(raw)) if raw else {}

    def _retry_later(
        self,
        key: bytes | None,
        action: dict[str, Any],
        value: bytes,
        partition: int,
        reason: str,
        attempts: int,
        failed: dict[str, Any],
    ) -> bool:
        """Park a transient failure in Redis to be tried again (True), or dead-letter it once
        it has failed for longer than `retry_for_s`."""
        now = self.clock()
        first = float(failed.get("first", now))
        if now - first >= self.retry_for_s:
            hours = (now - first) / 3600
            self._dead(key, value, action["action_id"], f"{reason} (for {hours:.1f} h)", attempts)
            return False
        rounds = int(failed.get("rounds", 0))
        wait = min(self.park_s * 2**rounds, self.max_park_s)
        record = {"attempts": attempts, "first": first, "rounds": rounds + 1, "reason": reason}
        self.store.hset(self._retries, action["action_id"], codec.dumps(record))
        self.down_until = now + wait
        self._park(action, value, partition, now + wait)
        self.stats.retrying += 1
        log.warning(
            "connector %s: delivery of %s failed %d times in %.0f s (%s); trying again in %.0f s",
            self.connector.name,
            action["action_id"],
            attempts,
            now - first,
            reason,
            wait,
        )
        return True

    def _park(self, action: dict[str, Any], value: bytes, partition: int, due: float) -> None:
        customer, action_id = action["customer_id"], action["action_id"]
        self.store.hset(self._pending(customer), action_id, value)
        self.store.zadd(self._due(partition), {f"{customer}\x1f{action_id}": due})

    def redrive(self, value: bytes, partition: int) -> bool:
        """A dead letter of this connector back into its waiting set, due now (the running
        connector delivers it; one already delivered since is skipped by its mark). False when
        it has expired: nobody can be offered it any more."""
        action = codec.loads(value)
        if epoch(action["expires_at"]) < self.clock():
            return False
        self.store.hdel(self._retries, action["action_id"])
        self._park(action, value, partition, self.clock())
        return True

    def _expired(self, key: bytes | None, action: dict[str, Any], value: bytes) -> None:
        """A waiting Action past `expires_at`: skipped, or a dead letter when it was waiting
        because the receiver failed (it was due, and never reached anyone)."""
        action_id = action["action_id"]
        failed = self._failures(action_id)
        self._never_delivered(action)
        if not failed:
            self.stats.skip("expired")
            return
        reason = f"expired while the receiver failed: {failed.get('reason', '?')}"
        self._dead(key, value, action_id, reason, int(failed.get("attempts", 0)))

    def _never_delivered(self, action: dict[str, Any]) -> None:
        """Tell the engine an Action of ours expired undelivered (an `expired` receipt), so
        its Outcome says so and nothing is learned or credited as if it had reached anyone;
        not for one delivered before (a late repeat of it)."""
        if self.store.exists(self._mark(action["action_id"])):
            return
        receipt = self._receipt_of(action)
        receipt["event_id"] = f"expired-{self.connector.name}-{action['action_id']}"
        receipt["kind"] = "expired"
        self.store.rpush(self._outbox, codec.dumps(receipt))

    def _dead(
        self, key: bytes | None, value: bytes, action_id: str, reason: str, attempts: int
    ) -> None:
        self.store.hdel(self._retries, action_id)
        self.stats.dead_letters += 1
        self.dead_letter(
            key,
            value,
            {
                "reason": reason[:500],
                "attempts": str(attempts),
                "connector": self.connector.name,
                "action_id": action_id,
            },
        )

    def drain_receipts(
        self, send: Callable[[dict[str, Any]], None], confirm: Callable[[], None]
    ) -> int:
        """Hand receipts to `send`, then (once `confirm` returns: the broker has them) forget
        them. Returns how many. Receipts are claimed atomically (a Redis script moves them
        from the outbox to an in-flight set with a deadline), so instances of one connector
        never take the same receipt nor drop another's; a claim whose instance died before
        confirming is taken again once its deadline passes: a receipt may then be sent twice,
        never lost (the engine drops a repeated event id among the customer's latest events;
        a repeat that arrives later counts the feedback twice)."""
        if self._claim is None:
            self._claim = self.store.register_script(_CLAIM)
        now = self.clock()
        claimed = self._claim(
            keys=[self._outbox, f"{self._outbox}:inflight"],
            args=[now, now + RECEIPT_CLAIM_S, self.receipt_batch],
        )
        if not claimed:
            return 0
        for raw in claimed:
            send(codec.loads(raw))
        confirm()
        self.store.zrem(f"{self._outbox}:inflight", *claimed)
        return len(claimed)

    def _receipt_of(self, action: dict[str, Any]) -> dict[str, Any]:
        """The receipt of a delivery: stamped with the delivery time in UTC ("Z": it says
        nothing of the customer's zone, and the host's zone is not theirs), within the
        Action's own span so that a connector's clock cannot move event time past it."""
        at = min(max(self.clock(), epoch(action["not_before"])), epoch(action["expires_at"]))
        stamp = datetime.fromtimestamp(at, UTC).isoformat(timespec="milliseconds")
        return {
            "event_id": f"receipt-{self.connector.name}-{action['action_id']}",
            "type": "message_feedback",
            "customer_id": action["customer_id"],
            "ts": stamp.replace("+00:00", "Z"),
            "channel": action["channel"],
            "kind": "delivered",
            "action_id": action["action_id"],
            "source": f"connector:{self.connector.name}",
        }


def channels_of(names: Iterable[str]) -> frozenset[str]:
    from schemas.action import CHANNELS

    chosen = frozenset(names)
    unknown = sorted(chosen - set(CHANNELS))
    if unknown:
        raise TactError(f"unknown channels {unknown}; expected some of {', '.join(CHANNELS)}")
    return chosen
