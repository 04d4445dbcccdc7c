"""The connector contract, on the SDK's runner with an in-memory store and a fake clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from app import codec
from app.connectors.sdk import DeliveryError, Runner, RunnerStats, channels_of
from app.connectors.webhook import sign, verify
from app.decode import validate_object
from app.engine import DecisionEngine
from app.errors import TactError
from app.policy import load_policy
from app.sample import demo_catalog
from schemas import Envelope
from schemas.types import zone_offset_minutes
from tests.builders import Shopper

T0 = datetime(2026, 12, 2, 10, 0, tzinfo=UTC)


class FakeRedis:
    """The few Redis commands the runner uses."""

    def __init__(self) -> None:
        self.kv: dict[str, bytes] = {}
        self.z: dict[str, dict[str, float]] = {}
        self.h: dict[str, dict[str, bytes]] = {}
        self.lists: dict[str, list[bytes]] = {}

    def set(self, name: str, value: Any, ex: int | None = None, nx: bool = False) -> bool:
        self.kv[name] = value
        return True

    def exists(self, *names: str) -> int:
        return sum(n in self.kv for n in names)

    def zadd(self, name: str, mapping: dict[str, float]) -> None:
        self.z.setdefault(name, {}).update(mapping)

    def zrem(self, name: str, *values: str) -> None:
        for v in values:
            self.z.get(name, {}).pop(v, None)

    def zrangebyscore(
        self, name: str, low: Any, high: float, start: int = 0, num: int = 100
    ) -> list[bytes]:
        items = sorted((s, m) for m, s in self.z.get(name, {}).items() if s <= high)
        return [m.encode() for _, m in items[start : start + num]]

    def hset(self, name: str, key: str, value: bytes) -> None:
        self.h.setdefault(name, {})[key] = value

    def hget(self, name: str, key: str) -> bytes | None:
        return self.h.get(name, {}).get(key)

    def hdel(self, name: str, *keys: str) -> None:
        for k in keys:
            self.h.get(name, {}).pop(k, None)

    def hgetall(self, name: str) -> dict[bytes, bytes]:
        return {k.encode(): v for k, v in self.h.get(name, {}).items()}

    def rpush(self, name: str, *values: bytes) -> None:
        self.lists.setdefault(name, []).extend(values)

    def lrange(self, name: str, start: int, end: int) -> list[bytes]:
        return self.lists.get(name, [])[start : end + 1]

    def ltrim(self, name: str, start: int, end: int) -> None:
        self.lists[name] = self.lists.get(name, [])[start:] if end == -1 else []

    def register_script(self, script: str) -> Any:
        """The receipts' claim script (app/connectors/sdk.py _CLAIM), in Python; the real one
        runs against redis-server in tests/integration/test_connectors.py."""
        assert "ZRANGEBYSCORE" in script and "LTRIM" in script

        def claim(keys: list[str], args: list[float]) -> list[bytes]:
            outbox, inflight = keys
            now, deadline, n = args
            lapsed = sorted((s, m) for m, s in self.z.get(inflight, {}).items() if s <= now)
            claimed = [m for _, m in lapsed][: int(n)]
            fresh = self.lists.get(outbox, [])[: int(n) - len(claimed)]
            self.lists[outbox] = self.lists.get(outbox, [])[len(fresh) :]
            claimed += fresh
            for member in claimed:
                self.z.setdefault(inflight, {})[member] = deadline
            return claimed

        return claim


class Channel:
    name = "test"
    channels = frozenset({"email", "sms"})

    def __init__(self, failures: list[DeliveryError] | None = None) -> None:
        self.delivered: list[str] = []
        self.failures = list(failures or [])

    def deliver(self, action: dict[str, Any]) -> None:
        if self.failures:
            raise self.failures.pop(0)
        self.delivered.append(action["action_id"])


class Harness:
    def __init__(self, connector: Channel | None = None) -> None:
        self.now = T0.timestamp()
        self.connector = connector or Channel()
        self.dead: list[dict[str, str]] = []
        self.receipts: list[dict[str, Any]] = []
        self.runner = Runner(
            self.connector,
            FakeRedis(),
            lambda key, value, headers: self.dead.append(headers),
            prefix="tact:test",
            clock=lambda: self.now,
            sleep=lambda _: None,
        )
        self.runner.caught_up = {0}  # these tests' records carry no timestamps: read to the end

    def send(self, **fields: Any) -> None:
        self.runner.handle(b"c1", codec.dumps(action(**fields)))
        self.runner.drain_receipts(self.receipts.append, lambda: None)


def action(
    n: int = 1, channel: str = "email", due_in: float = 0, lasts: float = 3600, **extra: Any
) -> dict[str, Any]:
    due = T0 + timedelta(seconds=due_in)
    return {
        "action_id": f"{n:032x}",
        "customer_id": "c1",
        "channel": channel,
        "play": "expand",
        "holdout": False,
        "not_before": due.isoformat(),
        "expires_at": (due + timedelta(seconds=lasts)).isoformat(),
        "suppress": [],
        **extra,
    }


def test_due_actions_are_delivered_once_with_a_receipt() -> None:
    h = Harness()
    h.send(n=1)
    h.send(n=1)  # redelivered after a restart
    assert h.connector.delivered == [f"{1:032x}"]
    assert h.runner.stats.duplicates == 1
    (receipt,) = h.receipts
    assert receipt["type"] == "message_feedback" and receipt["kind"] == "delivered"
    assert receipt["action_id"] == f"{1:032x}" and receipt["channel"] == "email"


def test_holdout_expired_and_other_channels_are_not_delivered() -> None:
    h = Harness()
    h.send(n=1, holdout=True)
    h.send(n=2, lasts=-10)  # expired before it arrived
    h.send(n=3, channel="onsite_pdp")
    assert h.connector.delivered == []
    assert h.runner.stats.skipped == {"holdout": 1, "expired": 1}
    # The engine hears of the expired one (its Outcome: never delivered); of nothing else.
    (receipt,) = h.receipts
    assert receipt["kind"] == "expired" and receipt["action_id"] == f"{2:032x}"
    assert receipt["event_id"] == f"expired-test-{2:032x}"
    validate_object(receipt)  # a valid event of its type


def test_a_late_repeat_of_a_delivered_action_is_not_reported_expired() -> None:
    h = Harness()
    h.send(n=1, lasts=60)
    h.now += 120  # the same Action again (a redelivery), now past its expiry
    h.send(n=1, lasts=60)
    assert [r["kind"] for r in h.receipts] == ["delivered"]


def test_actions_wait_for_not_before_and_a_later_suppression_cancels_them() -> None:
    h = Harness()
    h.send(n=1, due_in=600)
    h.send(n=2, due_in=900, channel="sms")
    assert h.connector.delivered == [] and h.runner.stats.waiting == 2
    until = (T0 + timedelta(hours=2)).isoformat()
    h.send(n=3, channel="onsite_cart", suppress=[{"channel": "sms", "until": until}])  # not ours
    h.now += 700
    assert h.runner.deliver_due() == 1
    assert h.connector.delivered == [f"{1:032x}"]  # the sms was cancelled
    h.now += 1000
    assert h.runner.deliver_due() == 0 and h.runner.stats.cancelled == 1


def test_a_lagging_connector_sees_later_suppressions_before_delivering() -> None:
    """Read late, an action already due waits until its partition is read past its due
    time, so a suppression decided before then, later in the log, still cancels it."""
    h = Harness()
    h.runner.caught_up = set()
    h.now += 3600  # an hour behind
    due = int(T0.timestamp() * 1000)
    sms = action(n=1, channel="sms", due_in=60)
    until = (T0 + timedelta(hours=2)).isoformat()
    quiet = action(n=2, channel="onsite_cart", suppress=[{"channel": "sms", "until": until}])
    h.runner.handle(b"c1", codec.dumps(sms), partition=0, timestamp_ms=due)
    assert h.connector.delivered == [] and h.runner.deliver_due() == 0  # read only to T0
    h.runner.handle(b"c1", codec.dumps(quiet), partition=0, timestamp_ms=due + 1000)
    h.runner.handle(b"c9", codec.dumps(action(n=3, customer_id="c9")), 0, due + 120_000)
    h.runner.deliver_due()
    assert h.connector.delivered == [f"{3:032x}"] and h.runner.stats.cancelled == 1


def test_an_action_that_expires_while_waiting_is_dropped() -> None:
    h = Harness()
    h.send(n=1, due_in=60, lasts=30)
    h.now += 200
    h.runner.deliver_due()
    assert h.connector.delivered == [] and h.runner.stats.skipped == {"expired": 1}


NIGHT = {"start": 21, "end": 8, "utc_offset_minutes": 120}  # quiet 19:00-06:00 UTC


def test_a_connector_that_reaches_an_action_in_its_quiet_hours_waits_until_they_end() -> None:
    """The engine schedules outbound Actions outside the customer's quiet hours; a connector
    that reaches one late (it lagged, the receiver was down) checks them again by its own
    clock: inside them it waits until they end, or skips the Action if it expires first."""
    h = Harness()
    h.send(n=1, quiet_hours=NIGHT)  # 10:00 UTC, 12:00 local: goes at once
    assert h.connector.delivered == [f"{1:032x}"]
    h.now += 10 * 3600  # the connector is late: 20:00 UTC, 22:00 local
    h.send(n=2, due_in=8 * 3600, lasts=24 * 3600, quiet_hours=NIGHT)  # was due at 18:00 UTC
    h.send(n=3, due_in=8 * 3600, lasts=3 * 3600, quiet_hours=NIGHT)  # gone by 21:00 UTC
    h.send(n=4, due_in=8 * 3600, lasts=24 * 3600)  # no quiet hours known: goes
    assert h.connector.delivered == [f"{1:032x}", f"{4:032x}"]
    h.now += 5 * 3600  # 01:00 UTC, 03:00 local: still night
    h.runner.deliver_due()
    assert h.connector.delivered == [f"{1:032x}", f"{4:032x}"]
    h.now += 5 * 3600  # 06:00 UTC, 08:00 local: the night is over
    h.runner.deliver_due()
    assert h.connector.delivered == [f"{1:032x}", f"{4:032x}", f"{2:032x}"]
    assert h.runner.stats.skipped == {"quiet hours until it expired": 1}
    h.runner.drain_receipts(h.receipts.append, lambda: None)
    assert [r["action_id"] for r in h.receipts][-1] == f"{2:032x}"
    assert h.receipts[-1]["ts"].startswith((T0 + timedelta(hours=20)).date().isoformat())


def test_an_action_that_waited_for_the_receiver_into_quiet_hours_past_expiry_is_a_dead_letter() -> (
    None
):
    """It was due, the receiver failed, and by the time it is tried again the customer's
    night lasts past its expiry: it never reached anyone because of the failure, so it is a
    dead letter with that story (not a quiet skip), and its failure record goes."""
    h = Harness(Channel([DeliveryError("HTTP 503", True)] * 3))
    h.now += 8 * 3600  # 18:00 UTC, 20:00 local: still allowed
    h.send(n=1, due_in=8 * 3600, lasts=2 * 3600, quiet_hours=NIGHT)
    assert h.connector.delivered == [] and h.runner.stats.retrying == 1
    h.now += 3600  # 19:00 UTC, 21:00 local: the night starts, and lasts past 20:00 UTC
    h.runner.deliver_due()
    assert (
        h.runner.stats.dead_letters == 1
        and "expired while the receiver failed" in (h.dead[0]["reason"])
    )
    assert h.runner.store.h.get(h.runner._retries, {}) == {}


def test_transient_failures_are_retried_permanent_ones_are_dead_letters() -> None:
    flaky = Channel([DeliveryError("HTTP 503", True), DeliveryError("timeout", True)])
    h = Harness(flaky)
    h.send(n=1)
    assert flaky.delivered == [f"{1:032x}"] and h.runner.stats.retries == 2
    broken = Harness(Channel([DeliveryError("HTTP 400", False)]))
    broken.send(n=2)
    assert broken.connector.delivered == [] and broken.dead == [
        {"reason": "HTTP 400", "attempts": "1", "connector": "test", "action_id": f"{2:032x}"}
    ]


class Down(Channel):
    """A receiver that fails (transiently) until `up_at`, counting every try."""

    def __init__(self, h: Harness, up_at: float) -> None:
        super().__init__()
        self.h, self.up_at, self.tries = h, up_at, 0

    def deliver(self, action: dict[str, Any]) -> None:
        self.tries += 1
        if self.h.now < self.up_at:
            raise DeliveryError("HTTP 502", True)
        super().deliver(action)


def outage(minutes: float, sent: int = 3, retry_for_s: float = 6 * 3600) -> tuple[Harness, Down]:
    """`sent` due Actions while the receiver is down for `minutes`; the loop runs every
    second of the next two hours."""
    h = Harness()
    down = Down(h, h.now + minutes * 60)
    h.connector = h.runner.connector = down
    h.runner.retry_for_s = retry_for_s
    for n in range(sent):
        h.send(n=n, lasts=3 * 3600)
    for _ in range(2 * 3600):
        h.now += 1
        h.runner.deliver_due()
    return h, down


def test_an_outage_of_an_hour_loses_nothing_and_spares_the_receiver() -> None:
    h, down = outage(minutes=60)
    assert sorted(down.delivered) == [f"{n:032x}" for n in range(3)] and h.dead == []
    # While it was down, one Action at a time probed it (3 quick tries, then a wait doubling
    # from 5 s to 5 minutes: 18 probes in the hour); the others waited behind it.
    assert down.tries <= 3 * 18 + 3
    assert h.runner.stats.retrying >= 10


def test_a_failure_that_outlasts_the_retry_time_is_a_dead_letter_with_its_story() -> None:
    h, down = outage(minutes=24 * 60, sent=1, retry_for_s=1800)  # as --retry-for 0.5
    assert down.delivered == [] and len(h.dead) == 1
    assert h.dead[0]["reason"].startswith("HTTP 502 (for 0.5 h)")
    assert int(h.dead[0]["attempts"]) > 3


def test_an_action_that_expires_while_the_receiver_fails_is_a_dead_letter() -> None:
    h = Harness()
    down = Down(h, h.now + 3600)
    h.connector = h.runner.connector = down
    h.send(n=1, lasts=600)
    for _ in range(900):
        h.now += 1
        h.runner.deliver_due()
    assert h.dead == [
        {
            "reason": "expired while the receiver failed: HTTP 502",
            "attempts": h.dead[0]["attempts"],
            "connector": "test",
            "action_id": f"{1:032x}",
        }
    ]
    assert h.runner.stats.skipped == {}  # not silently skipped as expired


def test_a_record_that_is_not_an_action_is_a_dead_letter() -> None:
    h = Harness()
    h.runner.handle(None, b"{not json")
    h.runner.handle(None, b'{"no": "fields"}')
    assert [d["reason"] for d in h.dead] == ["not_an_action", "not_an_action"]


def test_webhook_signatures() -> None:
    body, now = b'{"action_id":"x"}', str(int(datetime.now(UTC).timestamp()))
    signature = sign(b"s3cret", now, body)
    assert signature.startswith("sha256=") and verify(b"s3cret", now, body, signature)
    assert not verify(b"other", now, body, signature)
    assert not verify(b"s3cret", now, body + b" ", signature)
    assert not verify(
        b"s3cret", str(int(now) - 3600), body, sign(b"s3cret", str(int(now) - 3600), body)
    )


def test_a_receiver_verifies_with_the_secret_as_the_environment_gives_it() -> None:
    """The README's receiver passes the secret as a str (os.environ): it must verify, not
    raise; and a timestamp header that is not a number is a forgery, not a crash."""
    body, now = b'{"action_id":"x"}', str(int(datetime.now(UTC).timestamp()))
    signature = sign(b"s3cret", now, body)
    assert verify("s3cret", now, body, signature)
    assert sign("s3cret", now, body) == signature
    assert not verify("other", now, body, signature)
    assert not verify("s3cret", "soon", body, signature)


def test_unknown_channels_are_refused() -> None:
    assert channels_of(["email", "sms"]) == {"email", "sms"}
    with pytest.raises(TactError, match="fax"):
        channels_of(["email", "fax"])


def test_a_receipt_says_nothing_of_the_hosts_zone_and_stays_in_the_actions_span() -> None:
    """The receipt is stamped in UTC ("Z": zone unknown, never the connector host's zone) at
    the delivery time, which a connector's clock cannot move past the Action's own span."""
    h = Harness()
    h.now = T0.timestamp() + 600.0
    h.send(n=1)
    (receipt,) = h.receipts
    assert receipt["ts"].endswith("Z")
    assert datetime.fromisoformat(receipt["ts"]).timestamp() == h.now
    event = Envelope.model_validate(receipt)  # what the engine reads
    assert zone_offset_minutes(event.ts) is None
    h.now = T0.timestamp() + 10 * 86400.0  # a connector clock far ahead of the Action's span
    late = h.runner._receipt_of(action(n=2, lasts=3600))
    assert datetime.fromisoformat(late["ts"]).timestamp() == T0.timestamp() + 3600


def test_a_message_receipt_never_sets_the_customers_zone() -> None:
    engine = DecisionEngine(demo_catalog(), load_policy(None))
    shopper = Shopper("zoned", zone="-05:00")
    engine.process(shopper.view("RUN-SHOE-01"))
    receipt = shopper.event("message_feedback", channel="email", kind="delivered")
    receipt["ts"] = receipt["ts"].replace("-05:00", "+09:00")  # a mail system far away
    engine.process(receipt)
    assert engine.customers["zoned"].zone == -300


def test_a_runners_counts_read_as_a_sentence() -> None:
    stats = RunnerStats(delivered=1200, dead_letters=2, retries=5)
    stats.skip("holdout")
    stats.skip("expired")
    stats.skip("holdout")
    assert stats.line() == (
        "1,200 delivered, 0 duplicates skipped, 0 waited for their time, 0 waited for the "
        "receiver, 0 cancelled, "
        "2 dead letters, 5 retries; not delivered: 1 expired, 2 holdout"
    )


def test_a_kill_during_a_due_delivery_leaves_the_action_waiting() -> None:
    class Killed(Channel):
        def deliver(self, action: dict[str, Any]) -> None:
            raise KeyboardInterrupt  # the process dies mid-request

    h = Harness()
    h.send(n=1, due_in=60)
    h.runner.connector = Killed()
    h.now += 120
    with pytest.raises(KeyboardInterrupt):
        h.runner.deliver_due()
    h.runner.connector = h.connector  # the next instance
    h.runner.deliver_due()
    assert h.connector.delivered == [f"{1:032x}"]
