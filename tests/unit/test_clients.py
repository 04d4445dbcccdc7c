"""Every Kafka and Redis client is built in app/io/clients.py from the settings, the same way
for kafka-python, aiokafka and Faust. (Whether they connect to secured servers is proven in
tests/integration/test_secured.py against a real SASL_SSL / mTLS broker and a TLS Redis.)"""

from __future__ import annotations

import ast
import logging
import ssl
import subprocess
from pathlib import Path

import pytest

from app.errors import ConfigurationError
from app.io import clients
from app.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
HOME = ROOT / "app" / "io" / "clients.py"
# What makes a Kafka or Redis connection: a class called, or a pool or client from a URL.
BUILDERS = {
    "KafkaProducer",
    "KafkaConsumer",
    "KafkaAdminClient",
    "AIOKafkaProducer",
    "AIOKafkaConsumer",
    "AIOKafkaAdminClient",
    "AIOKafkaClient",
    "KafkaClient",
    "RedisCluster",
    "Sentinel",
    "App",
    "Redis",
    "StrictRedis",
    "ConnectionPool",
    "BlockingConnectionPool",
    "from_url",
}


def built_here(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call):
            name = getattr(node.func, "attr", None) or getattr(node.func, "id", None)
            if name in BUILDERS:
                found.append(f"{path.relative_to(ROOT)}:{node.lineno} {name}(...)")
    return found


def test_no_client_is_built_outside_the_clients_module() -> None:
    sources = [p for d in ("app", "agents", "benchmarks") for p in (ROOT / d).rglob("*.py")]
    assert len(sources) > 50
    offenders = [hit for p in sources if p != HOME for hit in built_here(p)]
    assert offenders == []
    assert len(built_here(HOME)) >= 8  # the scan does see constructions


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CA, a client certificate and its key (plain and encrypted), made by the project's
    own script."""
    where = tmp_path_factory.mktemp("certs")
    subprocess.run([str(ROOT / "deploy" / "certs.sh"), str(where)], check=True, timeout=120)
    return where


def test_plaintext_is_just_the_brokers() -> None:
    options = clients.kafka_options(Settings(kafka_bootstrap="k1:9092, k2:9092"))
    assert options == {
        "bootstrap_servers": ["k1:9092", "k2:9092"],
        "bootstrap_timeout_ms": 10_000,
        "security_protocol": "PLAINTEXT",
    }
    quick = Settings(kafka_connect_timeout_s=2.5)
    assert clients.kafka_options(quick)["bootstrap_timeout_ms"] == 2500


def test_sasl_ssl_gives_every_client_the_credentials_and_one_tls_context(certs: Path) -> None:
    settings = Settings(
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_mechanism="SCRAM-SHA-512",
        kafka_sasl_username="shop",
        kafka_sasl_password="pw",
        kafka_ssl_cafile=certs / "ca.pem",
    )
    options = clients.kafka_options(settings)
    assert options["security_protocol"] == "SASL_SSL"
    assert options["sasl_mechanism"] == "SCRAM-SHA-512"
    assert (options["sasl_plain_username"], options["sasl_plain_password"]) == ("shop", "pw")
    context = options["ssl_context"]
    assert isinstance(context, ssl.SSLContext)
    assert context.check_hostname and context.verify_mode == ssl.CERT_REQUIRED
    assert any("tact-test-ca" in str(c.get("subject")) for c in context.get_ca_certs())

    # Faust makes the protocol SASL_SSL only when SASLCredentials carry an ssl_context.
    from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

    app = clients.faust_app(settings)
    auth = credentials_to_aiokafka_auth(app.conf.broker_credentials)
    assert auth["security_protocol"] == "SASL_SSL"
    assert auth["sasl_mechanism"] == "SCRAM-SHA-512"
    assert auth["sasl_plain_password"] == "pw"
    assert auth["ssl_context"] is context


def mutual_tls(certs: Path, **overrides: object) -> Settings:
    """Settings for mutual TLS with the encrypted client key."""
    fields: dict[str, object] = {
        "kafka_security_protocol": "SSL",
        "kafka_ssl_cafile": certs / "ca.pem",
        "kafka_ssl_certfile": certs / "client.pem",
        "kafka_ssl_keyfile": certs / "client-encrypted.key",
        "kafka_ssl_key_password": "tact-key-pass",
    }
    return Settings(**(fields | overrides))  # type: ignore[arg-type]


def test_mutual_tls_loads_the_client_certificate(certs: Path) -> None:
    settings = mutual_tls(certs, kafka_ssl_check_hostname=False)
    options = clients.kafka_options(settings)
    assert options["security_protocol"] == "SSL"
    assert "sasl_mechanism" not in options
    assert options["ssl_context"].check_hostname is False

    from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

    auth = credentials_to_aiokafka_auth(clients.faust_app(settings).conf.broker_credentials)
    assert auth == {"security_protocol": "SSL", "ssl_context": options["ssl_context"]}


@pytest.mark.parametrize(
    ("key", "password", "says"),
    [
        ("client-encrypted.key", "", "the key is encrypted: set TACT_KAFKA_SSL_KEY_PASSWORD"),
        ("client-encrypted.key", "pass-XYZ", "check TACT_KAFKA_SSL_KEY_PASSWORD"),
        ("other-client.key", "", "the key does not belong to the certificate"),
    ],
)
def test_an_unreadable_client_key_is_a_configuration_error(
    certs: Path, key: str, password: str, says: str
) -> None:
    """Never a passphrase prompt on the terminal (OpenSSL's, when given no password)."""
    settings = mutual_tls(certs, kafka_ssl_keyfile=certs / key, kafka_ssl_key_password=password)
    with pytest.raises(ConfigurationError, match="TACT_KAFKA_SSL_CERTFILE") as caught:
        clients.kafka_options(settings)
    assert says in str(caught.value)
    assert "pass-XYZ" not in str(caught.value)  # never the passphrase


def test_a_cafile_that_is_no_certificate_is_a_configuration_error(tmp_path: Path) -> None:
    junk = tmp_path / "ca.pem"
    junk.write_text("not a certificate\n")
    settings = Settings(kafka_security_protocol="SSL", kafka_ssl_cafile=junk)
    with pytest.raises(ConfigurationError, match=r"TACT_KAFKA_SSL_CAFILE=.*not a PEM file"):
        clients.kafka_options(settings)


def test_producers_are_durable_unless_asked_otherwise() -> None:
    assert clients._durable({}) == {"acks": "all", "enable_idempotence": True}
    assert clients._durable({"acks": 1}) == {"acks": 1, "enable_idempotence": False}


def test_redis_tls_options_go_only_with_rediss(certs: Path) -> None:
    tls = Settings(
        redis_url="rediss://tact:pw@cache:6380/0",
        redis_ssl_ca_certs=certs / "ca.pem",
        redis_ssl_certfile=certs / "client.pem",
        redis_ssl_keyfile=certs / "client.key",
    )
    assert clients.redis_options(tls) == {
        "ssl_ca_certs": str(certs / "ca.pem"),
        "ssl_certfile": str(certs / "client.pem"),
        "ssl_keyfile": str(certs / "client.key"),
    }
    client = clients.redis_client(tls)
    kwargs = client.connection_pool.connection_kwargs
    assert kwargs["ssl_ca_certs"] == str(certs / "ca.pem")
    assert (kwargs["username"], kwargs["password"]) == ("tact", "pw")
    assert clients.redis_options(Settings()) == {}


def test_topics_are_not_made_with_more_replicas_than_brokers_and_one_replica_is_loud(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from app.io.kafka_admin import _check_replication

    with pytest.raises(ConfigurationError, match="TACT_TOPIC_REPLICATION=3 but the cluster"):
        _check_replication(Settings(topic_replication=3), brokers=2)
    _check_replication(Settings(topic_replication=3), brokers=3)
    assert caplog.records == []
    _check_replication(Settings(), brokers=3)
    assert "CREATING TOPICS WITH ONE REPLICA" in caplog.text
    assert Settings(topic_replication=3).min_insync_replicas == 2
    assert Settings(topic_replication=2).min_insync_replicas == 1
    assert Settings(topic_replication=5, topic_min_insync_replicas=3).min_insync_replicas == 3


def test_a_client_that_cannot_connect_says_why_in_one_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """kafka-python's warning per failed try is kept for the message, not shown."""
    from app.errors import DependencyUnavailable

    caplog.set_level("INFO")
    with pytest.raises(DependencyUnavailable, match=r"no Kafka broker answers at 127\.0\.0\.1:1"):
        clients.admin(Settings(kafka_bootstrap="127.0.0.1:1"), bootstrap_timeout_ms=2500)
    assert [r for r in caplog.records if r.name.startswith("kafka")] == []
    assert logging.getLogger("kafka").propagate  # restored
