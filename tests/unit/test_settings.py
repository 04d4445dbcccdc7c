"""Settings from the environment, options checked at start and the status page: a wrong value is
a message naming what is wrong, never a traceback; secrets are never echoed."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from app.errors import ConfigurationError
from app.io.status import Status
from app.settings import TOPICS, Settings, load_settings, shown_url

TACT = Path(sys.executable).with_name("tact")
NOWHERE = Settings(kafka_bootstrap="127.0.0.1:1")


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("user:hunter2@cache:6379", "should be a URL starting with"),
        ("rediss://shop:hunter2/x@cache:6380/0", "percent-encode / # ? @ and %"),
        ("rediss://shop:hunter2#x@cache:6380/0", "percent-encode / # ? @ and %"),
    ],
)
def test_a_secret_is_never_echoed(monkeypatch: pytest.MonkeyPatch, url: str, says: str) -> None:
    monkeypatch.setenv("TACT_REDIS_URL", url)
    with pytest.raises(ConfigurationError) as caught:
        load_settings()
    assert says in str(caught.value)
    assert "hunter2" not in str(caught.value)


@pytest.mark.parametrize(
    ("env", "says"),
    [
        ({"TACT_BATCH_MAX": "abc"}, "TACT_BATCH_MAX=abc: should be a valid integer"),
        ({"TACT_APP_ID": ""}, "TACT_APP_ID=: should match pattern"),
        ({"TACT_METRICS_PORT": "99999"}, "TACT_METRICS_PORT=99999: should be less than or equal"),
        ({"TACT_LOG_LEVEL": "loud"}, "TACT_LOG_LEVEL=loud: should be 'debug', 'info'"),
        ({"TACT_REDIS_URL": "127.0.0.1:6379"}, "TACT_REDIS_URL: should be a URL starting with"),
        ({"TACT_KAFKA_SECURITY_PROTOCOL": "TLS"}, "TACT_KAFKA_SECURITY_PROTOCOL=TLS: should be"),
        ({"TACT_KAFKA_SASL_MECHANISM": "MD5"}, "TACT_KAFKA_SASL_MECHANISM=MD5: should be"),
        ({"TACT_KAFKA_SSL_CAFILE": "/no/ca.pem"}, "TACT_KAFKA_SSL_CAFILE=/no/ca.pem: should be a"),
        ({"TACT_REDIS_SSL_CA_CERTS": "/no/ca.pem"}, "TACT_REDIS_SSL_CA_CERTS=/no/ca.pem: should"),
        (
            {"TACT_KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "TACT_KAFKA_SASL_USERNAME": "u"},
            "TACT_KAFKA_SECURITY_PROTOCOL=SASL_SSL needs TACT_KAFKA_SASL_MECHANISM",
        ),
        (
            {"TACT_KAFKA_SASL_MECHANISM": "PLAIN", "TACT_KAFKA_SASL_USERNAME": "u"},
            "TACT_KAFKA_SASL_* is set but TACT_KAFKA_SECURITY_PROTOCOL=PLAINTEXT",
        ),
        (
            {"TACT_KAFKA_SSL_CAFILE": __file__},
            "TACT_KAFKA_SSL_CAFILE is set but TACT_KAFKA_SECURITY_PROTOCOL=PLAINTEXT",
        ),
        (
            {"TACT_KAFKA_SECURITY_PROTOCOL": "SSL", "TACT_KAFKA_SSL_KEYFILE": __file__},
            "TACT_KAFKA_SSL_KEYFILE needs TACT_KAFKA_SSL_CERTFILE",
        ),
        (
            {"TACT_REDIS_SSL_CA_CERTS": __file__},
            "TACT_REDIS_SSL_CA_CERTS is set but TACT_REDIS_URL is not rediss://",
        ),
        (
            {"TACT_TOPIC_REPLICATION": "2", "TACT_TOPIC_MIN_INSYNC_REPLICAS": "3"},
            "TACT_TOPIC_MIN_INSYNC_REPLICAS=3 is more than TACT_TOPIC_REPLICATION=2",
        ),
    ],
)
def test_a_bad_setting_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], says: str
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigurationError, match="bad setting") as caught:
        load_settings()
    assert says in str(caught.value)


def test_secured_settings_never_echo_their_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TACT_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("TACT_KAFKA_SASL_MECHANISM", "SCRAM-SHA-512")
    monkeypatch.setenv("TACT_KAFKA_SASL_USERNAME", "shop")
    monkeypatch.setenv("TACT_KAFKA_SASL_PASSWORD", "kafka-hunter2")
    monkeypatch.setenv("TACT_KAFKA_SSL_KEY_PASSWORD", "key-hunter2")
    monkeypatch.setenv("TACT_REDIS_URL", "rediss://tact:redis-hunter2@cache:6380/0")
    settings = load_settings()
    shown = str(settings.redacted())
    assert "hunter2" not in shown
    assert "rediss://tact:***@cache:6380/0" in shown  # the rest of the URL as it is
    monkeypatch.setenv("TACT_TOPIC_PARTITIONS", "0")
    with pytest.raises(ConfigurationError) as caught:
        load_settings()
    assert "hunter2" not in str(caught.value)


@pytest.mark.parametrize("bootstrap", ["127.0.0.1:90922", "broker:", ":9092", "a:9092,,b:9092"])
def test_a_kafka_address_that_cannot_be_one_is_refused_at_once(
    monkeypatch: pytest.MonkeyPatch, bootstrap: str
) -> None:
    monkeypatch.setenv("TACT_KAFKA_BOOTSTRAP", bootstrap)
    with pytest.raises(ConfigurationError, match=r"TACT_KAFKA_BOOTSTRAP.*ports 1 to 65535"):
        load_settings()


@pytest.mark.parametrize("bootstrap", ["127.0.0.1:9092", "a:9092, b:9093", "broker", "[::1]:9092"])
def test_kafka_addresses_are_taken_as_given(
    monkeypatch: pytest.MonkeyPatch, bootstrap: str
) -> None:
    monkeypatch.setenv("TACT_KAFKA_BOOTSTRAP", bootstrap)
    assert load_settings().kafka_bootstrap == bootstrap


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
        ("rediss://tact:s3cret@cache.example:6380/2", "rediss://tact:***@cache.example:6380/2"),
        ("redis://:s3cret@cache:6379", "redis://:***@cache:6379"),
        ("unix:///run/redis.sock?db=1", "unix:///run/redis.sock?db=1"),
        # Unencoded / # ? @ in a password: masked as text, never shown whole.
        ("rediss://shop:redis/se#c?ret@cache:6380/0", "rediss://shop:***@cache:6380/0"),
        ("rediss://shop:p@ss@cache:6380/0", "rediss://shop:***@cache:6380/0"),
        (
            "rediss://cache:6380/0?username=shop&password=s3cret",
            "rediss://cache:6380/0?username=shop&password=***",
        ),
        ("redis://cache/0?password=a@b&db=1", "redis://cache/0?password=***&db=1"),
    ],
)
def test_a_redis_url_is_shown_with_only_its_password_masked(url: str, shown: str) -> None:
    assert shown_url(url) == shown


def refused(argv: list[str], env: dict[str, str], cwd: Path) -> str:
    """Run `tact argv` with only `env`: it must stop with exit 2 and a message, never a
    traceback; returns what it said."""
    run = subprocess.run(
        [str(TACT), *argv],
        env={**env, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
    )
    assert run.returncode == 2, run.stderr
    assert "Traceback" not in run.stderr
    return run.stderr


def test_the_command_line_says_it_without_a_traceback(tmp_path: Path) -> None:
    said = refused(["topics", "create"], {"TACT_BATCH_MAX": "abc"}, tmp_path)
    assert "TACT_BATCH_MAX=abc" in said


def test_a_taken_status_port_is_explained() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        status = Status(NOWHERE)
        with pytest.raises(ConfigurationError, match="TACT_METRICS_PORT"):
            status.serve(port)


@pytest.mark.parametrize(
    "url", ["shop.example/hook", "http://", "http://shop:abc/x", "ftp://h/x?token=s3cret"]
)
def test_a_webhook_url_is_checked_at_start(url: str, tmp_path: Path) -> None:
    env = {"TACT_WEBHOOK_SECRET": "s", "TACT_KAFKA_BOOTSTRAP": "127.0.0.1:1"}
    said = refused(["connector", "run", "webhook", "--url", url], env, tmp_path)
    assert "tact: --url" in said
    assert "s3cret" not in said  # a URL may carry a token: never echoed whole


def test_the_worker_keeps_its_files_under_the_data_dir(tmp_path: Path) -> None:
    from app.io.faust_app import build_app

    app = build_app(Settings(data_dir=tmp_path / "w" / "nested", app_id="shop-1"))
    assert Path(app.conf.datadir) == tmp_path / "w" / "nested" / "shop-1"
    assert Path(app.conf.datadir).is_dir()  # made, parents too: Faust makes only the last


@pytest.mark.parametrize("max_event_kib", [1024, 64, 8192])
def test_a_fetch_brings_a_valid_events_batch_and_little_more(
    tmp_path: Path, max_event_kib: int
) -> None:
    """What a fetch brings of a topic-partition: small (a backlog waits in Kafka, not in the
    worker's memory), yet never below the largest valid event."""
    from app.io.faust_app import build_app

    settings = Settings(data_dir=tmp_path, max_event_bytes=max_event_kib * 1024)
    fetch = build_app(settings).conf.consumer_max_fetch_size
    assert fetch > settings.max_event_bytes
    assert fetch <= max(512 * 1024, settings.max_event_bytes + 64 * 1024)


def test_a_relative_data_dir_is_taken_from_where_tact_starts(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    assert Settings().data_dir == tmp_path / ".run" / "worker"
    monkeypatch.setenv("TACT_DATA_DIR", "state/tact")
    settings = load_settings()
    monkeypatch.chdir("/")  # a later change of directory moves nothing
    assert settings.data_dir == tmp_path / "state" / "tact"


def test_the_worker_starts_with_one_short_line_and_the_rest_at_debug(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from app.io import worker

    def refuse(settings: Settings) -> None:
        raise ConfigurationError("no Redis here")

    monkeypatch.setattr(worker.clients, "check_redis", refuse)
    monkeypatch.setattr(worker.logging.config, "dictConfig", lambda config: None)
    settings = Settings(
        app_id="shop-1",
        kafka_bootstrap="broker:9092",
        redis_url="redis://u:hunter2@cache:6379/0",
        data_dir=tmp_path,
    )
    caplog.set_level("DEBUG", logger="app.io.worker")
    with pytest.raises(ConfigurationError):
        worker.run_worker(settings)
    first, dump = (r.getMessage() for r in caplog.records)
    assert len(first) < 400, first
    assert first.startswith("starting tact ")
    assert (
        "worker: group shop-1; Kafka broker:9092 (PLAINTEXT), Redis redis://u:***@cache:6379/0; "
        "reads clickstream + orders, writes actions, outcomes, dead-letters (made if missing, 6 "
        f"partitions); local files in {tmp_path / 'shop-1'}"
    ) in first
    assert caplog.records[1].levelname == "DEBUG"
    assert "'batch_max': 500" in dump and "hunter2" not in first + dump


def test_the_apps_topics_by_short_name_are_the_ones_set(monkeypatch: pytest.MonkeyPatch) -> None:
    """`tact topics read dead_letters` and the demo's namespaces name topics this way."""
    monkeypatch.setenv("TACT_TOPIC_DEAD_LETTERS", "shop-dlq")
    topics = load_settings().topics
    assert topics["dead_letters"] == "shop-dlq" and topics["actions"] == "actions"
    assert set(topics) == set(TOPICS)
