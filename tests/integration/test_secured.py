"""tact on a secured cluster, as managed services run them: a real Kafka broker with a SASL_SSL
listener (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512) and a mutual-TLS listener, and a redis-server
with TLS and ACL users, all started by the project's own scripts with certificates the scripts
make. Every command here is configured only through the documented TACT_* variables."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from app import codec
from app.io.kafka_admin import ensure_topics
from app.sample import generate
from app.settings import Settings
from tests.integration.conftest import ROOT, TACT, free_port, own, settings_env
from tests.integration.kafka_helpers import TopicReader, produce_events, producer
from tests.integration.test_worker import clickstream_only, expected_actions, topics_of

SASL_PASSWORD = "tact-secret"
REDIS_PASSWORD = "redis-secret"
REDIS_ACL = (
    "~tact:* ~{tact:* +@read +@write +@keyspace +@scripting +@transaction +ping +select +time"
)
REES46 = ROOT.parent / "shared" / "datasets" / "rees46_2019oct_head" / "2019-Oct_head.csv.gz"


def free_run_of_ports(count: int, start: int) -> int:
    """The first port from `start` (in steps of 10) with `count` free ports after it."""
    for base in range(start, start + 2000, 10):
        try:
            for port in range(base, base + count):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", port))
        except OSError:
            continue
        return base
    raise AssertionError("no free ports")


@dataclass(frozen=True)
class Secured:
    certs: Path
    sasl_port: int  # SASL_SSL; the mTLS listener is sasl_port + 2
    redis_port: int

    def kafka(self, protocol: str = "SASL_SSL", **overrides: Any) -> Settings:
        """Settings for this cluster: SASL_SSL with SCRAM-SHA-512 (as MSK) or mutual TLS
        (protocol SSL), Redis over TLS as an ACL user; this test's own topics and group."""
        fields: dict[str, Any] = own("tact-secured") | {
            "kafka_security_protocol": protocol,
            "kafka_ssl_cafile": self.certs / "ca.pem",
            "redis_url": f"rediss://shop:{REDIS_PASSWORD}@127.0.0.1:{self.redis_port}/0",
            "redis_ssl_ca_certs": self.certs / "ca.pem",
            "topic_partitions": 1,
        }
        if protocol == "SASL_SSL":
            fields |= {
                "kafka_bootstrap": f"127.0.0.1:{self.sasl_port}",
                "kafka_sasl_mechanism": "SCRAM-SHA-512",
                "kafka_sasl_username": "tact",
                "kafka_sasl_password": SASL_PASSWORD,
            }
        else:
            fields |= {
                "kafka_bootstrap": f"127.0.0.1:{self.sasl_port + 2}",
                "kafka_ssl_certfile": self.certs / "client.pem",
                "kafka_ssl_keyfile": self.certs / "client-encrypted.key",
                "kafka_ssl_key_password": "tact-key-pass",
            }
        return Settings(**(fields | overrides))


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Secured]:
    """The secured broker and Redis, started by deploy/ scripts, stopped afterwards."""
    where = tmp_path_factory.mktemp("secured")
    certs = where / "certs"
    subprocess.run([str(ROOT / "deploy" / "certs.sh"), str(certs)], check=True, timeout=120)
    kafka_port = free_run_of_ports(4, 19400)
    redis_port = free_run_of_ports(1, 16400)
    kafka_env = {
        **os.environ,
        "TACT_KAFKA_SECURE": "1",
        "TACT_KAFKA_BOOTSTRAP": f"127.0.0.1:{kafka_port}",
        "TACT_KAFKA_CERTS": str(certs),
        "TACT_RUN_DIR": str(where / "run"),
    }
    redis_env = {
        **os.environ,
        "TACT_REDIS_URL": f"rediss://tact:{REDIS_PASSWORD}@127.0.0.1:{redis_port}/0",
        "TACT_REDIS_CERTS": str(certs),
        # The least a tact user needs, as README "Connecting to a secured Kafka and Redis"
        # says; and a read-only one.
        "TACT_REDIS_ACL_EXTRA": f"user shop on >{REDIS_PASSWORD} {REDIS_ACL}\n"
        "user reader on >reader-secret ~* +@read +ping",
        "TACT_RUN_DIR": str(where / "run"),
    }
    broker = ROOT / "deploy" / "kafka" / "broker.sh"
    redis_sh = ROOT / "deploy" / "redis.sh"
    try:
        subprocess.run([str(broker), "start"], env=kafka_env, check=True, timeout=180)
        subprocess.run([str(redis_sh), "start"], env=redis_env, check=True, timeout=60)
        yield Secured(certs, kafka_port, redis_port)
    finally:
        subprocess.run([str(broker), "stop"], env=kafka_env, timeout=120)
        subprocess.run([str(redis_sh), "stop"], env=redis_env, timeout=60)


def tact(settings: Settings, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(TACT), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=settings_env(settings),
        cwd=ROOT,
    )


def refused(settings: Settings, *args: str) -> str:
    """Run a tact command that must fail fast (well within the clients' retry times) with a
    message, never a traceback or a secret; returns the message. Its Kafka clients keep the
    default 10 s to connect: a refused login usually shows within a second, but with 3 s and
    6 s a CI run once took it for a listener that does not speak SASL."""
    started = time.monotonic()
    done = tact(settings, *args, timeout=90)
    assert done.returncode == 2, done.stderr
    assert time.monotonic() - started < 45, done.stderr
    assert "Traceback" not in done.stderr
    for secret in (SASL_PASSWORD, REDIS_PASSWORD, "tact-key-pass", "wrong-password"):
        assert secret not in done.stderr
    return done.stderr


def decides_as_the_engine(settings: Settings, start_worker: Any) -> tuple[Any, int, int, Any]:
    """Events in, a worker on `settings`, and exactly the engine's actions out; returns the
    worker, the numbers of events and actions, and a producer."""
    ensure_topics(settings)
    events = clickstream_only(list(generate(40, seed=5)))
    expected = expected_actions(events)
    total = sum(len(v) for v in expected.values())
    assert total > 10
    prod = producer(settings)
    produce_events(prod, topics_of(settings), events)
    worker = start_worker(settings)
    actions = TopicReader(settings, settings.topic_actions)
    actions.wait_for(lambda r: len(r) >= total, what=f"{total} actions")
    got = sorted(r.value for r in actions.settle())
    assert got == sorted(v for vs in expected.values() for v in vs)
    return worker, len(events), total, prod


def test_the_worker_lag_and_connectors_run_on_sasl_ssl_and_tls_redis(
    secured: Secured, start_worker: Any, tmp_path: Path
) -> None:
    """SCRAM-SHA-512 over TLS (as Amazon MSK) and Redis over TLS as an ACL user with only the
    commands README lists: the worker decides exactly as the engine, `tact lag` reads its
    group, and the onsite API and the webhook connector deliver from the secured `actions`
    topic."""
    from tests.integration.test_connectors import SECRET, Receiver, make_action

    settings = secured.kafka()
    worker, sent, total, prod = decides_as_the_engine(settings, start_worker)
    assert worker.wait_metrics()['tact_events_total{type="page_view"}'] > 0

    deadline = time.monotonic() + 60
    while True:  # the group commits its offsets within a second or two
        lag = tact(settings, "lag", "--json")
        assert lag.returncode == 0, lag.stderr
        rows = [
            r
            for r in codec.loads(lag.stdout)["partitions"]
            if r["topic"] == settings.topic_clickstream
        ]
        if rows and all(r["lag"] == 0 for r in rows):
            break
        assert time.monotonic() < deadline, lag.stdout
        time.sleep(1)

    # The learner, as the same ACL user: it reads the journals and the Redis clock.
    learner = start_worker(settings, "learner")
    deadline = time.monotonic() + 30
    while "learning from the journals" not in learner.log():
        assert learner.proc.poll() is None and time.monotonic() < deadline, learner.log()
        time.sleep(0.2)
    time.sleep(2.0)  # (it has read the clock and the journals a few times by now)
    assert learner.proc.poll() is None, learner.log()

    # The webhook connector and the onsite API, on the same secured Kafka and Redis.
    receiver = Receiver(set())
    email = make_action(1, "email", _now(), customer_id="w1")
    onsite = make_action(2, "onsite_pdp", _now(), customer_id="o1")
    for a in (email, onsite):
        prod.send(settings.topic_actions, key=a["customer_id"].encode(), value=codec.dumps(a))
    prod.flush()
    port = free_port()
    env = {**settings_env(settings), "TACT_WEBHOOK_SECRET": SECRET}
    with (tmp_path / "connectors.log").open("ab") as out:
        procs = [
            subprocess.Popen(
                [str(TACT), "connector", "run", "webhook", "--url", receiver.url],
                env=env, stdout=out, stderr=subprocess.STDOUT,
            ),
            subprocess.Popen(
                [str(TACT), "connector", "run", "onsite", "--port", str(port)],
                env=env, stdout=out, stderr=subprocess.STDOUT,
            ),
        ]  # fmt: skip
    try:
        deadline = time.monotonic() + 90
        while email["action_id"] not in set(receiver.keys()) or _offer(port, "o1") != onsite:
            assert time.monotonic() < deadline, (tmp_path / "connectors.log").read_text()
            assert all(p.poll() is None for p in procs), (tmp_path / "connectors.log").read_text()
            time.sleep(0.3)
    finally:
        for p in procs:
            p.terminate()
            p.wait(timeout=30)
        receiver.server.shutdown()
    said = (tmp_path / "connectors.log").read_text()
    assert "connector webhook stopping: 1 delivered, 0 duplicates skipped" in said  # in words
    assert worker.close(), "the worker did not stop within 30 s of SIGTERM"
    stopped = re.search(
        r"worker stopped after [\d.]+ min: ([\d,]+) events, ([\d,]+) actions, 0 dead", worker.log()
    )
    assert stopped, worker.log()  # a clean stop says so, and what it did (the connectors'
    # receipts are events too)
    assert int(stopped[1].replace(",", "")) >= sent
    assert int(stopped[2].replace(",", "")) >= total
    started = r"worker: group \S+, inputs .* \(1 partitions each\), policy .*; Kafka 127\.0\.0\.1"
    assert re.search(started + r":\d+ \(SASL_SSL\), Redis rediss://shop:\*\*\*@", worker.log())
    for secret in (SASL_PASSWORD, REDIS_PASSWORD):
        assert secret not in worker.log() and secret not in said


def _now() -> Any:
    from datetime import UTC, datetime

    return datetime.now(UTC)


def _offer(port: int, customer: str) -> dict[str, Any] | None:
    import urllib.request

    url = f"http://127.0.0.1:{port}/v1/customers/{customer}/offer?surface=onsite_pdp"
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            body = response.read()
    except OSError:
        return None
    return codec.loads(body) if body else None


def test_the_worker_runs_over_mutual_tls(secured: Secured, start_worker: Any) -> None:
    """Faust's consumer and producer with a client certificate (SSLCredentials)."""
    worker, _, _, _ = decides_as_the_engine(secured.kafka("SSL"), start_worker)
    assert worker.wait_metrics()['tact_events_total{type="page_view"}'] > 0


def test_ingest_and_replay_from_topics_over_mutual_tls(secured: Secured, tmp_path: Path) -> None:
    """A client certificate (its key encrypted, with a passphrase) instead of a password:
    `tact ingest` loads a dataset and `tact replay --from-topics` reads it back."""
    if not REES46.is_file():
        pytest.fail(f"the REES46 sample is not at {REES46} (../shared/datasets)")
    settings = secured.kafka("SSL")
    catalog = tmp_path / "catalog.jsonl"
    made = tact(
        settings, "datasets", "rees46", "--source", str(REES46),
        "--events", str(tmp_path / "events.jsonl"), "--catalog", str(catalog),
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    ingest = tact(settings, "ingest", "rees46", "--source", str(REES46))
    assert ingest.returncode == 0, ingest.stderr
    assert "produced 17,434 events" in ingest.stderr
    out = tmp_path / "actions.jsonl"
    replay = tact(
        settings, "replay", "--from-topics", "--catalog", str(catalog), "--out", str(out),
        "--since", "2019-10-01T01:00:00Z", "--until", "2019-10-01T01:59:59Z",
    )  # fmt: skip
    assert replay.returncode == 0, replay.stderr
    assert "dead letters   0" in replay.stderr
    inside = sum(
        "2019-10-01T01:" in codec.loads(line)["ts"]
        for line in (tmp_path / "events.jsonl").read_bytes().splitlines()
    )
    assert inside > 50 and f"{inside:,} events" in replay.stderr  # the hour only, all of it


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256"])
def test_other_sasl_mechanisms_connect(secured: Secured, mechanism: str) -> None:
    """PLAIN (as Confluent Cloud) and SCRAM-SHA-256 set up topics and read lag."""
    settings = secured.kafka(kafka_sasl_mechanism=mechanism)
    created = tact(settings, "topics", "create")
    assert created.returncode == 0, created.stderr
    assert settings.topic_clickstream in created.stdout
    lag = tact(settings, "lag", "--json", "--group", "nobody-" + uuid.uuid4().hex[:6])
    assert "no consumer group" in lag.stderr  # connected, authenticated, asked


def test_a_wrong_sasl_password_says_so(secured: Secured) -> None:
    # 20 s to connect, not the default 10: the refusal is read from what kafka-python logs
    # while it bootstraps, and twice in CI the loaded test broker took longer than the
    # client's timeout to refuse (read then as a listener that does not speak SASL)
    settings = secured.kafka(kafka_sasl_password="wrong-password", kafka_connect_timeout_s=20.0)
    said = refused(settings, "topics", "create")
    assert "refused the SASL credentials (mechanism SCRAM-SHA-512, user 'tact')" in said


def test_an_untrusted_broker_certificate_says_so(secured: Secured) -> None:
    settings = secured.kafka(kafka_ssl_cafile=secured.certs / "other-ca.pem")
    said = refused(settings, "topics", "create")
    assert "certificate of the Kafka broker" in said and "is not trusted" in said
    assert "TACT_KAFKA_SSL_CAFILE" in said


@pytest.mark.parametrize("cert", ["none", "other"])
def test_a_client_certificate_the_broker_does_not_trust_says_so(
    secured: Secured, cert: str
) -> None:
    if cert == "none":
        overrides: dict[str, Any] = {"kafka_ssl_certfile": None, "kafka_ssl_keyfile": None}
    else:
        overrides = {
            "kafka_ssl_certfile": secured.certs / "other-client.pem",
            "kafka_ssl_keyfile": secured.certs / "other-client.key",
            "kafka_ssl_key_password": "",
        }
    said = refused(secured.kafka("SSL", **overrides), "topics", "create")
    assert "refused tact's client certificate" in said


@pytest.mark.parametrize(
    ("redis_url", "ca", "says"),
    [
        ("rediss://shop:wrong-password@127.0.0.1:{port}/0", "ca.pem", "refused the credentials"),
        ("rediss://reader:reader-secret@127.0.0.1:{port}/0", "ca.pem", "may not do what tact"),
        (f"rediss://shop:{REDIS_PASSWORD}@127.0.0.1:{{port}}/0", "other-ca.pem", "TLS handshake"),
        (f"redis://shop:{REDIS_PASSWORD}@127.0.0.1:{{port}}/0", None, "rediss://"),
    ],
)
def test_redis_that_cannot_be_used_says_why(
    secured: Secured, redis_url: str, ca: str | None, says: str
) -> None:
    """The worker checks Redis before it starts: which of TLS, the password or the ACL failed."""
    settings = secured.kafka(
        redis_url=redis_url.format(port=secured.redis_port),
        redis_ssl_ca_certs=secured.certs / ca if ca else None,
    )
    said = refused(settings, "worker")
    assert says in said
    assert f"127.0.0.1:{secured.redis_port}" in said  # where, with the password masked


@pytest.mark.parametrize("protocol", ["PLAINTEXT", "SSL"])
def test_the_wrong_protocol_for_a_listener_says_so(secured: Secured, protocol: str) -> None:
    """The usual first mistake with a managed cluster: no security protocol set (or TLS
    without SASL) against its SASL_SSL port."""
    settings = secured.kafka(
        kafka_security_protocol=protocol,
        kafka_sasl_mechanism=None,
        kafka_sasl_username="",
        kafka_sasl_password="",
        kafka_ssl_cafile=secured.certs / "ca.pem" if protocol == "SSL" else None,
    )
    said = refused(settings, "topics", "create")
    assert f"but not as a Kafka {protocol} listener" in said
    assert "TACT_KAFKA_SECURITY_PROTOCOL" in said
    assert ("TLS handshake works" in said) == (protocol == "SSL")


def test_a_read_only_redis_user_is_told_before_the_export_starts(
    secured: Secured, tmp_path: Path
) -> None:
    """`tact connector export` also prunes what has expired, so it writes: a read-only ACL
    user gets the message, not a traceback half-way."""
    settings = secured.kafka(
        redis_url=f"rediss://reader:reader-secret@127.0.0.1:{secured.redis_port}/0"
    )
    out = tmp_path / "audience.csv"
    said = refused(settings, "connector", "export", "paid-audience", "--out", str(out))
    assert "may not do what tact needs" in said
    assert not out.exists()
