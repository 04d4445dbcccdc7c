"""Connectors against the real broker and Redis, and a real HTTP receiver: a webhook connector
killed with SIGKILL mid-stream and restarted delivers every Action exactly once."""

from __future__ import annotations

import signal
import subprocess
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from app import codec
from app.connectors.webhook import verify
from app.settings import Settings
from tests.integration.conftest import TACT, free_port, settings_env
from tests.integration.kafka_helpers import TopicReader, producer

SECRET = "webhook-test-secret"


class Receiver:
    """Records every POST; answers 503 to the first try of some, to exercise retries."""

    def __init__(self, flaky: set[str], delay_s: float = 0.01) -> None:
        self.posts: list[tuple[str, dict[str, Any], bool]] = []
        self.lock = threading.Lock()
        self.flaky = set(flaky)
        self.down = False  # answers 503 to everything while down
        self.broken: set[str] = set()  # answers 400 (a permanent failure) to these
        self.refused = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                key = self.headers["Idempotency-Key"]
                ok = verify(
                    SECRET.encode(),
                    self.headers["X-Tact-Timestamp"],
                    body,
                    self.headers["X-Tact-Signature"],
                )
                with receiver.lock:
                    if key in receiver.broken:
                        self.send_response(400)
                        self.end_headers()
                        return
                    if receiver.down:
                        receiver.refused += 1
                        self.send_response(503)
                        self.end_headers()
                        return
                    if key in receiver.flaky:
                        receiver.flaky.discard(key)
                        self.send_response(503)
                        self.end_headers()
                        return
                    receiver.posts.append((key, codec.loads(body), ok))
                time.sleep(delay_s)
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}/hook"

    def keys(self) -> list[str]:
        with self.lock:
            return [k for k, _, _ in self.posts]


def make_action(n: int, channel: str, due: datetime, **extra: Any) -> dict[str, Any]:
    return {
        "action_id": f"{n:032x}",
        "customer_id": f"c{n % 40}",
        "ts": due.isoformat(),
        "play": "expand",
        "channel": channel,
        "offer_sku": "RUN-SOCK-01",
        "frame": "completeness",
        "intensity": "low",
        "not_before": due.isoformat(),
        "expires_at": (due + timedelta(hours=1)).isoformat(),
        "suppress": [],
        "holdout": False,
        "expected_profit": 1.0,
        "propensity": 1.0,
        "experiments": {},
        "reasons": ["moment:cart"],
        "policy_version": "test",
        "model_version": "test",
        "source_event_id": f"e{n}",
        **extra,
    }


def connector(settings: Settings, url: str, log: Path, *options: str) -> subprocess.Popen[bytes]:
    env = {**settings_env(settings), "TACT_WEBHOOK_SECRET": SECRET}
    options = options or ("--channels", "email,sms")
    with log.open("ab") as out:
        return subprocess.Popen(
            [str(TACT), "connector", "run", "webhook", "--url", url, *options],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def test_two_webhook_configurations_need_two_names(stack: Settings, tmp_path: Path) -> None:
    """Two webhooks for two channels: under one name they would split one consumer group and
    each drop the other's channel; the second is refused, and under its own name both deliver
    everything of theirs."""
    now = datetime.now(UTC)
    actions = [make_action(n, "email" if n % 2 else "sms", now) for n in range(80)]
    mail, texts = Receiver(set()), Receiver(set())
    first = connector(
        stack, mail.url, tmp_path / "mail.log", "--name", "mail", "--channels", "email"
    )
    deadline = time.monotonic() + 60
    while "connector mail delivering email" not in (tmp_path / "mail.log").read_text():
        assert time.monotonic() < deadline and first.poll() is None, (
            tmp_path / "mail.log"
        ).read_text()
        time.sleep(0.1)
    clash = subprocess.run(
        [
            str(TACT),
            "connector",
            "run",
            "webhook",
            "--url",
            texts.url,
            "--name",
            "mail",
            "--channels",
            "sms",
        ],
        env={**settings_env(stack), "TACT_WEBHOOK_SECRET": SECRET},
        capture_output=True,
        text=True,
        timeout=60,
    )
    second = connector(
        stack, texts.url, tmp_path / "texts.log", "--name", "texts", "--channels", "sms"
    )
    try:
        assert clash.returncode == 2, clash.stderr
        assert "connector name 'mail' is running with another configuration" in clash.stderr
        assert "Traceback" not in clash.stderr
        prod = producer(stack.kafka_bootstrap)
        for a in actions:
            prod.send(stack.topic_actions, key=a["customer_id"].encode(), value=codec.dumps(a))
        prod.flush()
        want = {
            "email": {a["action_id"] for a in actions if a["channel"] == "email"},
            "sms": {a["action_id"] for a in actions if a["channel"] == "sms"},
        }
        deadline = time.monotonic() + 60
        while set(mail.keys()) < want["email"] or set(texts.keys()) < want["sms"]:
            assert time.monotonic() < deadline, (tmp_path / "texts.log").read_text()
            assert first.poll() is None and second.poll() is None
            time.sleep(0.1)
        time.sleep(2.0)  # anything extra would have arrived by now
        assert set(mail.keys()) == want["email"] and set(texts.keys()) == want["sms"]
        for log in ("mail.log", "texts.log"):  # each new group got its partitions at once
            assert "No partition metadata" not in (tmp_path / log).read_text()
    finally:
        for process in (first, second):
            process.terminate()
            process.wait(timeout=30)


def test_webhook_delivers_every_action_exactly_once_across_a_kill(
    stack: Settings, tmp_path: Path
) -> None:
    now = datetime.now(UTC)
    later = now + timedelta(seconds=6)
    actions = [make_action(n, "email" if n % 3 else "sms", now) for n in range(300)]
    actions += [make_action(n, "email", later) for n in range(300, 330)]  # wait for not_before
    actions += [make_action(n, "email", now, holdout=True) for n in range(330, 350)]
    actions += [make_action(n, "onsite_pdp", now) for n in range(350, 360)]  # not our channel
    # Waiting SMS of customers c0..c9, cancelled by a later onsite action's suppression.
    actions += [
        make_action(n, "sms", later + timedelta(seconds=5), customer_id=f"q{n}")
        for n in range(360, 370)
    ]
    until = (later + timedelta(minutes=30)).isoformat()
    actions += [
        make_action(
            n + 20,
            "onsite_cart",
            now,
            customer_id=f"q{n}",
            suppress=[{"channel": "sms", "until": until}],
        )
        for n in range(360, 370)
    ]
    expected = {a["action_id"] for a in actions[:330]}
    flaky = {a["action_id"] for a in actions[10:15]}
    receiver = Receiver(flaky)

    prod = producer(stack.kafka_bootstrap)
    for a in actions:
        prod.send(stack.topic_actions, key=a["customer_id"].encode(), value=codec.dumps(a))
    prod.flush()

    first = connector(stack, receiver.url, tmp_path / "connector-0.log")
    deadline = time.monotonic() + 60
    while len(set(receiver.keys())) < 100:
        assert time.monotonic() < deadline and first.poll() is None, (
            tmp_path / "connector-0.log"
        ).read_text()
        time.sleep(0.05)
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=30)
    delivered_before = len(set(receiver.keys()))
    assert delivered_before < len(expected), "the kill came after everything was delivered"

    second = connector(stack, receiver.url, tmp_path / "connector-1.log")
    try:
        deadline = time.monotonic() + 90
        while set(receiver.keys()) < expected:
            assert time.monotonic() < deadline, (tmp_path / "connector-1.log").read_text()
            time.sleep(0.2)
        time.sleep(3.0)  # anything extra would have arrived by now
    finally:
        second.terminate()
        second.wait(timeout=30)

    keys = receiver.keys()
    assert set(keys) == expected  # every Action, none of the holdout, other-channel or cancelled
    repeats = len(keys) - len(set(keys))
    assert repeats <= 1, f"{repeats} repeated deliveries"  # at most the one in flight at the kill
    assert all(ok for _, _, ok in receiver.posts), "a request without a valid signature"
    by_key = {k: body for k, body, _ in receiver.posts}
    assert all(by_key[a["action_id"]] == a for a in actions[:330])  # the Action, unchanged
    receipts = TopicReader(stack.kafka_bootstrap, stack.topic_clickstream).wait_for(
        lambda r: {codec.loads(x.value)["action_id"] for x in r} >= expected, what="receipts"
    )
    kinds = {(codec.loads(r.value)["type"], codec.loads(r.value)["kind"]) for r in receipts}
    assert kinds == {("message_feedback", "delivered")}


def test_a_receiver_outage_loses_nothing_across_a_stop_and_the_stop_is_prompt(
    stack: Settings, tmp_path: Path
) -> None:
    """The receiver answers 503 for longer than the old retries lasted (about 6 s, after which
    everything due became a dead letter for good); SIGTERM comes during the outage. Nothing is
    a dead letter: the failures wait in Redis, a new instance delivers them once the receiver
    is back, each once."""
    now = datetime.now(UTC)
    actions = [make_action(n, "email", now) for n in range(30)]
    receiver = Receiver(set())
    receiver.down = True
    prod = producer(stack.kafka_bootstrap)
    for a in actions:
        prod.send(stack.topic_actions, key=a["customer_id"].encode(), value=codec.dumps(a))
    prod.flush()
    log = tmp_path / "connector.log"
    name = uuid.uuid4().hex[:6]  # this test's own connector: only its dead letters count
    first = connector(stack, receiver.url, log, "--name", name)
    deadline = time.monotonic() + 60
    while receiver.refused == 0:
        assert time.monotonic() < deadline and first.poll() is None, log.read_text()
        time.sleep(0.1)
    time.sleep(12)
    first.terminate()
    stopping = time.monotonic()
    first.wait(timeout=60)
    assert time.monotonic() - stopping < 10, log.read_text()  # was 71 s
    assert receiver.keys() == []
    assert receiver.refused < 3 * 10  # one Action probes; the others wait behind it

    receiver.down = False
    second = connector(stack, receiver.url, log, "--name", name)
    try:
        deadline = time.monotonic() + 120
        while len(set(receiver.keys())) < len(actions):
            assert time.monotonic() < deadline and second.poll() is None, log.read_text()
            time.sleep(0.2)
    finally:
        second.terminate()
        second.wait(timeout=30)
    assert sorted(receiver.keys()) == sorted(a["action_id"] for a in actions)  # each once
    dead = TopicReader(stack.kafka_bootstrap, stack.topic_connector_dead_letters).settle(1.0)
    assert [r for r in dead if dict(r.headers).get("tact.dlq.connector") == name.encode()] == []
    assert "trying again in" in log.read_text()  # the outage is in the log


def test_dead_letters_are_delivered_again_by_redrive(stack: Settings, tmp_path: Path) -> None:
    """A receiver refuses some Actions (400: a bug on its side), they become dead letters; once
    it is fixed, `tact connector redrive` puts them back and the running connector delivers
    them, each once, the expired one left out."""
    now = datetime.now(UTC)
    actions = [make_action(n, "email", now) for n in range(20)]
    short = make_action(20, "email", now, expires_at=(now + timedelta(seconds=8)).isoformat())
    receiver = Receiver(set())
    receiver.broken = {a["action_id"] for a in actions[:5]} | {short["action_id"]}
    prod = producer(stack.kafka_bootstrap)
    for a in [*actions, short]:
        prod.send(stack.topic_actions, key=a["customer_id"].encode(), value=codec.dumps(a))
    prod.flush()
    tag = uuid.uuid4().hex[:6]  # this test's own connector name: only its dead letters
    log = tmp_path / "connector.log"
    env = {**settings_env(stack), "TACT_WEBHOOK_SECRET": SECRET}
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [str(TACT), "connector", "run", "webhook", "--url", receiver.url, "--name", tag],
            env=env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while len(set(receiver.keys())) < 15:
            assert time.monotonic() < deadline and proc.poll() is None, log.read_text()
            time.sleep(0.2)
        dead = TopicReader(stack.kafka_bootstrap, stack.topic_connector_dead_letters)
        dead.wait_for(
            lambda r: (
                sum(dict(x.headers).get("tact.dlq.connector") == tag.encode() for x in r) >= 6
            ),
            what="six dead letters",
        )
        assert "is a dead letter" in log.read_text()
        receiver.broken = set()
        time.sleep(max((now + timedelta(seconds=9) - datetime.now(UTC)).total_seconds(), 0))
        done = subprocess.run(
            [str(TACT), "connector", "redrive", tag],
            env=env, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert f"5 dead letters of connector {tag} are waiting to be delivered again" in (
            done.stdout
        )
        assert "1 expired already (left out)" in done.stdout
        deadline = time.monotonic() + 60
        while len(set(receiver.keys())) < 20:
            assert time.monotonic() < deadline and proc.poll() is None, log.read_text()
            time.sleep(0.2)
        time.sleep(2.0)  # anything extra would have arrived by now
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert sorted(receiver.keys()) == sorted(a["action_id"] for a in actions)  # each once


def test_paid_audience_keeps_who_is_suppressed_and_exports_it(
    stack: Settings, tmp_path: Path
) -> None:
    now = datetime.now(UTC)
    soon, later = now + timedelta(seconds=4), now + timedelta(hours=3)

    def quiet(
        n: int, customer: str, until: datetime, channel: str = "paid_retargeting"
    ) -> dict[str, Any]:
        return make_action(
            n,
            "onsite_cart",
            now,
            customer_id=customer,
            suppress=[{"channel": channel, "until": until.isoformat()}],
        )

    actions = [
        quiet(1, "a", later),
        quiet(2, "b", soon),  # expires before the export
        quiet(3, "c", later, channel="email"),  # not paid: not in the audience
        quiet(4, "d", soon),
        quiet(5, "d", later),  # a later, longer suppression extends d's
        quiet(6, "e", later),
        quiet(7, "e", soon),  # a shorter one never shortens it
    ]
    prod = producer(stack.kafka_bootstrap)
    for a in actions:
        prod.send(stack.topic_actions, key=a["customer_id"].encode(), value=codec.dumps(a))
    prod.flush()
    env = settings_env(stack)
    log = tmp_path / "audience.log"
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [str(TACT), "connector", "run", "paid-audience"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        import redis

        store = redis.Redis.from_url(stack.redis_url.get_secret_value())
        key = f"tact:{stack.app_id}:connector:paid-audience:suppressed"
        deadline = time.monotonic() + 60
        while store.zcard(key) < 4:
            assert time.monotonic() < deadline and proc.poll() is None, log.read_text()
            time.sleep(0.2)
        time.sleep(max((soon - datetime.now(UTC)).total_seconds() + 0.5, 0))
        csv_path = tmp_path / "audience.csv"
        done = subprocess.run(
            [str(TACT), "connector", "export", "paid-audience", "--out", str(csv_path)],
            env=env, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        lines = csv_path.read_text().splitlines()
        assert lines[0] == "customer_id,suppressed_until"
        assert sorted(line.split(",")[0] for line in lines[1:]) == ["a", "d", "e"]
        assert "3 customers" in done.stdout
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_onsite_api_serves_the_current_offer(stack: Settings, tmp_path: Path) -> None:
    import urllib.error
    import urllib.request

    now = datetime.now(UTC)
    until = (now + timedelta(hours=1)).isoformat()
    actions = [
        make_action(1, "onsite_pdp", now, customer_id="a"),
        make_action(2, "onsite_cart", now, customer_id="b"),
        make_action(
            3, "email", now, customer_id="b", suppress=[{"channel": "onsite_cart", "until": until}]
        ),
        make_action(4, "onsite_pdp", now, customer_id="c", holdout=True),
        make_action(5, "onsite_pdp", now - timedelta(hours=2), customer_id="d"),  # expired
        make_action(6, "onsite_cart", now + timedelta(seconds=3), customer_id="e"),  # due soon
    ]
    prod = producer(stack.kafka_bootstrap)
    for a in actions:
        prod.send(stack.topic_actions, key=a["customer_id"].encode(), value=codec.dumps(a))
    prod.flush()
    port = free_port()
    log = tmp_path / "onsite.log"
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [str(TACT), "connector", "run", "onsite", "--port", str(port)],
            env=settings_env(stack), stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip

    def get(customer: str, surface: str) -> tuple[int, dict[str, Any] | None]:
        url = f"http://127.0.0.1:{port}/v1/customers/{customer}/offer?surface={surface}"
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                body = response.read()
                return response.status, (codec.loads(body) if body else None)
        except urllib.error.HTTPError as exc:
            return exc.code, None

    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                status, body = get("a", "onsite_pdp")
            except OSError:
                status, body = 0, None
            if status == 200:
                break
            assert time.monotonic() < deadline and proc.poll() is None, log.read_text()
            time.sleep(0.2)
        assert body == actions[0]
        assert get("a", "onsite_cart")[0] == 204  # nothing on that surface
        assert get("b", "onsite_cart")[0] == 204  # withdrawn by the later suppression
        assert get("c", "onsite_pdp")[0] == 204  # holdout: never shown
        assert get("d", "onsite_pdp")[0] == 204  # expired
        deadline = time.monotonic() + 30
        while get("e", "onsite_cart")[0] != 200:  # shown once it is due
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        assert get("a", "fax")[0] == 400
    finally:
        proc.terminate()
        proc.wait(timeout=30)


class _Quiet:
    """A connector that is never asked to deliver (these runners only hand receipts on)."""

    name = "receipts-test"
    channels = frozenset({"email"})

    def deliver(self, action: dict[str, Any]) -> None:
        raise AssertionError("not used")


def test_two_instances_hand_receipts_on_without_losing_or_sharing_one(
    base_settings: Settings,
) -> None:
    """Two instances of one connector drain one outbox on the real redis-server: while one
    is sending its receipts the other claims none of them, receipts written meanwhile wait
    for the next drain, and a claim whose instance died is taken again after its deadline."""
    import redis

    from app.connectors.sdk import RECEIPT_CLAIM_S, Runner

    store = redis.Redis.from_url(base_settings.redis_url.get_secret_value())
    prefix = f"tact-test-{uuid.uuid4().hex[:8]}"
    clock = [1_000.0]

    def runner() -> Runner:
        return Runner(_Quiet(), store, lambda *_: None, prefix, clock=lambda: clock[0])

    a, b, crashing = runner(), runner(), runner()
    outbox = a._outbox

    def push(*ids: int) -> None:
        for i in ids:
            store.rpush(outbox, codec.dumps({"event_id": f"receipt-{i}"}))

    sent: list[str] = []
    push(*range(6))

    def send_a(receipt: dict[str, Any]) -> None:
        if not sent:  # while `a` is sending: the other instance drains, new receipts come
            assert b.drain_receipts(lambda r: sent.append(r["event_id"]), lambda: None) == 0
            push(6, 7, 8)
        sent.append(receipt["event_id"])

    assert a.drain_receipts(send_a, lambda: None) == 6
    assert b.drain_receipts(lambda r: sent.append(r["event_id"]), lambda: None) == 3
    assert sorted(sent) == sorted(f"receipt-{i}" for i in range(9))  # each once

    push(9, 10)

    def die(receipt: dict[str, Any]) -> None:
        raise RuntimeError("killed before the broker confirmed")

    crashing.receipt_batch = 2
    with pytest.raises(RuntimeError):
        crashing.drain_receipts(die, lambda: None)
    assert a.drain_receipts(lambda r: sent.append(r["event_id"]), lambda: None) == 0  # claimed
    clock[0] += RECEIPT_CLAIM_S + 1
    assert a.drain_receipts(lambda r: sent.append(r["event_id"]), lambda: None) == 2
    assert sorted(sent) == sorted(f"receipt-{i}" for i in range(11))
    assert store.llen(outbox) == 0 and store.zcard(f"{outbox}:inflight") == 0
    store.delete(outbox, f"{outbox}:inflight")
