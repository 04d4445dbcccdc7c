"""The one settings object. Every value comes from a `TACT_`-prefixed environment variable
(or a `.env` file); nothing else in tact reads the environment.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, FilePath, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from app.decode import DEFAULT_MAX_EVENT_BYTES
from app.errors import ConfigurationError

_REDIS_SCHEMES = ("redis://", "rediss://", "unix://")
KafkaProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]


# The app's topics by short name: the setting `topic_<name>` (TACT_TOPIC_<NAME>) names each.
TOPICS = ("clickstream", "orders", "actions", "outcomes", "dead_letters", "connector_dead_letters")


class Settings(BaseSettings):
    """tact's configuration; see README "Configuration" for each variable."""

    model_config = SettingsConfigDict(env_prefix="TACT_", env_file=".env", extra="ignore")

    kafka_bootstrap: str = Field("127.0.0.1:9092", description="host:port[,host:port] of Kafka")
    kafka_security_protocol: KafkaProtocol = Field(
        "PLAINTEXT", description="how every tact client talks to Kafka"
    )
    kafka_sasl_mechanism: SaslMechanism | None = Field(
        None, description="SASL mechanism (with SASL_PLAINTEXT or SASL_SSL)"
    )
    kafka_sasl_username: str = Field("", description="SASL user")
    kafka_sasl_password: SecretStr = Field(SecretStr(""), description="SASL password (secret)")
    kafka_ssl_cafile: FilePath | None = Field(
        None,
        description="PEM file of the CA(s) that signed the brokers' certificates "
        "(default: the system's trusted CAs)",
    )
    kafka_ssl_certfile: FilePath | None = Field(
        None, description="PEM client certificate for mutual TLS"
    )
    kafka_ssl_keyfile: FilePath | None = Field(
        None, description="PEM key of the client certificate"
    )
    kafka_ssl_key_password: SecretStr = Field(
        SecretStr(""), description="passphrase of the client key (secret)"
    )
    kafka_ssl_check_hostname: bool = Field(
        True, description="check that the broker's certificate names the host connected to"
    )
    kafka_connect_timeout_s: float = Field(
        10.0,
        gt=0,
        le=300,
        description="a Kafka client that cannot connect for this long gives up and says why",
    )
    redis_url: SecretStr = Field(
        SecretStr("redis://127.0.0.1:6379/0"),
        description="Redis URL; may hold a password, so it is secret",
    )
    redis_ssl_ca_certs: FilePath | None = Field(
        None, description="PEM file of the CA that signed Redis's certificate (rediss://)"
    )
    redis_ssl_certfile: FilePath | None = Field(
        None, description="PEM client certificate for Redis"
    )
    redis_ssl_keyfile: FilePath | None = Field(
        None, description="PEM key of the Redis client certificate"
    )
    app_id: str = Field(
        "tact",
        pattern=r"^[A-Za-z0-9._-]{1,100}$",
        description="Faust app id: the consumer group and the Redis key prefix",
    )

    topic_clickstream: str = "clickstream"
    topic_orders: str = "orders"
    topic_actions: str = "actions"
    topic_outcomes: str = "outcomes"
    topic_dead_letters: str = "dead-letters"
    topic_connector_dead_letters: str = "connector-dead-letters"
    create_topics: bool = Field(True, description="create missing topics when the worker starts")
    topic_partitions: int = Field(6, ge=1, le=1000, description="partitions of created topics")
    topic_replication: int = Field(
        1, ge=1, le=10, description="replication factor of the topics tact creates"
    )
    topic_min_insync_replicas: int | None = Field(
        None,
        ge=1,
        le=10,
        description="min.insync.replicas of the topics tact creates (default: 2 when replicated "
        "3 or more times, else 1)",
    )

    max_event_bytes: int = Field(DEFAULT_MAX_EVENT_BYTES, ge=1024, le=64 * 1024 * 1024)
    batch_max: int = Field(500, ge=1, le=100_000, description="events per processing batch")
    gc_full_every_s: float = Field(
        600.0,
        ge=0,
        le=3600,
        description="Python's full garbage collection runs at the first batch once this many "
        "seconds have passed since the last; survivors are frozen meanwhile "
        "(agents/gcpacing.py); 0: Python's own schedule",
    )
    heap_trim_every_s: float = Field(
        1.0,
        ge=0,
        le=3600,
        description="between batches, at most this often, the memory freed inside the heap "
        "goes back to the system (glibc's malloc_trim; agents/heap.py); 0: never",
    )
    max_future_skew_s: float = Field(
        300.0,
        ge=0,
        le=86400,
        description="events dated further than this after the worker's clock are dead letters "
        "(future_timestamp)",
    )
    producer_timeout_s: float = Field(
        1200.0,
        ge=1,
        le=86400,
        description="how long a record may wait for the broker before its send fails (Faust's "
        "producer_request_timeout)",
    )
    batch_retry_s: float = Field(
        120.0,
        gt=0,
        le=3600,
        description="a batch that cannot be sent or checkpointed is retried from the checkpoint "
        "for this long; then the worker exits with status 75 for its supervisor to restart it",
    )
    align_wait_s: float = Field(
        5.0,
        ge=0,
        le=600,
        description="a partition's clickstream and orders are folded merged in event time; "
        "one of the two with records in Kafka and none fetched holds the other back this long "
        "at most (then the other goes on alone)",
    )
    session_timeout_s: float = Field(
        10.0, ge=6, le=300, description="consumer session timeout (failover time)"
    )
    stop_timeout_s: float = Field(
        15.0,
        gt=0,
        le=600,
        description="after SIGTERM or SIGINT, the worker exits within this long even if a part "
        "of Faust has not stopped (status 1; nothing not checkpointed was acknowledged)",
    )
    learner: bool = Field(
        False,
        description="true: workers record what they learn for `tact learner`, the one process "
        "that learns, and decide from the models it publishes (for several workers); false: "
        "each worker learns and checkpoints the models itself (one worker)",
    )
    state_ttl_days: int = Field(400, ge=1, description="idle customer state expires after this")
    max_cached_customers: int = Field(
        200_000, ge=100, description="customer states a worker keeps in memory (LRU)"
    )
    hot_customers: int = Field(
        10_000,
        ge=100,
        description="of those, the most recently used kept as objects; the others are kept "
        "as their saved bytes (a quarter of the memory) until they are needed",
    )

    webhook_secret: SecretStr = Field(
        SecretStr(""), description="HMAC key the webhook connector signs requests with"
    )

    catalog: Path | None = Field(None, description="catalog JSONL (default: the demo catalog)")
    policy: Path | None = Field(None, description="policy YAML (default: the built-in policy)")
    seed: int = Field(0, description="engine seed")
    data_dir: Path = Field(
        Path(".run/worker"),
        validate_default=True,
        description="the worker's local files (Faust's); a relative path is taken from the "
        "directory tact starts in",
    )

    metrics_port: int = Field(9464, ge=0, le=65535, description="Prometheus port; 0 disables")
    metrics_host: str = Field(
        "127.0.0.1", description="address the status page listens on (0.0.0.0: every interface)"
    )
    lag_interval_s: float = Field(
        15.0, ge=1, le=3600, description="how often the worker reads its group's lag"
    )
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["auto", "json", "text"] = "auto"

    @field_validator(
        "kafka_sasl_mechanism",
        "kafka_ssl_cafile",
        "kafka_ssl_certfile",
        "kafka_ssl_keyfile",
        "redis_ssl_ca_certs",
        "redis_ssl_certfile",
        "redis_ssl_keyfile",
        mode="before",
    )
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator("kafka_bootstrap")
    @classmethod
    def _bootstrap(cls, value: str) -> str:
        """host:port entries with a port a broker can have (a typo such as 90922 would
        otherwise show as a broker that does not answer, after the connect timeout)."""
        for server in (s.strip() for s in value.split(",")):
            host, colon, port = server.rpartition(":")
            if not server or (colon and not (host and port.isdigit() and 0 < int(port) < 65536)):
                raise ValueError(f"host:port[,host:port] with ports 1 to 65535, not {server!r}")
        return value

    @field_validator("data_dir")
    @classmethod
    def _from_where_started(cls, value: Path) -> Path:
        """Absolute from the start, so the worker logs (and keeps to) one place whatever
        changes its working directory later."""
        return value.expanduser().absolute()

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, value: SecretStr) -> SecretStr:
        url = value.get_secret_value()
        if not url.startswith(_REDIS_SCHEMES):
            raise ValueError(f"a URL starting with {', '.join(_REDIS_SCHEMES)}")
        try:
            urlsplit(url).port  # noqa: B018 (what redis-py reads; raises on a bad one)
        except ValueError:
            raise ValueError(
                "a URL whose host and port can be read: percent-encode / # ? @ and % in the "
                "user and password (e.g. / as %2F)"
            ) from None
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        problems = []
        sasl = self.kafka_security_protocol.startswith("SASL_")
        tls = self.kafka_security_protocol.endswith("SSL")
        if sasl and not (
            self.kafka_sasl_mechanism
            and self.kafka_sasl_username
            and self.kafka_sasl_password.get_secret_value()
        ):
            problems.append(
                f"TACT_KAFKA_SECURITY_PROTOCOL={self.kafka_security_protocol} needs "
                "TACT_KAFKA_SASL_MECHANISM, TACT_KAFKA_SASL_USERNAME and TACT_KAFKA_SASL_PASSWORD"
            )
        if not sasl and (self.kafka_sasl_mechanism or self.kafka_sasl_username):
            problems.append(
                "TACT_KAFKA_SASL_* is set but TACT_KAFKA_SECURITY_PROTOCOL="
                f"{self.kafka_security_protocol}: use SASL_SSL (or SASL_PLAINTEXT)"
            )
        tls_files = [
            name
            for name in ("kafka_ssl_cafile", "kafka_ssl_certfile", "kafka_ssl_keyfile")
            if getattr(self, name) is not None
        ]
        if tls_files and not tls:
            problems.append(
                f"TACT_{tls_files[0].upper()} is set but TACT_KAFKA_SECURITY_PROTOCOL="
                f"{self.kafka_security_protocol}: use SSL or SASL_SSL, or the file is ignored"
            )
        if self.kafka_ssl_keyfile is not None and self.kafka_ssl_certfile is None:
            problems.append("TACT_KAFKA_SSL_KEYFILE needs TACT_KAFKA_SSL_CERTFILE")
        if self.redis_ssl_keyfile is not None and self.redis_ssl_certfile is None:
            problems.append("TACT_REDIS_SSL_KEYFILE needs TACT_REDIS_SSL_CERTFILE")
        redis_tls = [
            name
            for name in ("redis_ssl_ca_certs", "redis_ssl_certfile", "redis_ssl_keyfile")
            if getattr(self, name) is not None
        ]
        if redis_tls and not self.redis_url.get_secret_value().startswith("rediss://"):
            problems.append(
                f"TACT_{redis_tls[0].upper()} is set but TACT_REDIS_URL is not rediss:// (TLS)"
            )
        insync = self.topic_min_insync_replicas
        if insync is not None and insync > self.topic_replication:
            problems.append(
                f"TACT_TOPIC_MIN_INSYNC_REPLICAS={insync} is more than "
                f"TACT_TOPIC_REPLICATION={self.topic_replication}: no write could succeed"
            )
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @property
    def min_insync_replicas(self) -> int:
        """min.insync.replicas for the topics tact creates."""
        if self.topic_min_insync_replicas is not None:
            return self.topic_min_insync_replicas
        return 2 if self.topic_replication >= 3 else 1

    @property
    def redis_prefix(self) -> str:
        """What every Redis key of this app id starts with."""
        return f"tact:{self.app_id}"

    @property
    def redis_shown(self) -> str:
        """The Redis URL as it may be shown: only its password masked."""
        return shown_url(self.redis_url.get_secret_value())

    @property
    def topics(self) -> dict[str, str]:
        """The app's topics by their short names (TOPICS) -> the topic names set."""
        return {t: getattr(self, f"topic_{t}") for t in TOPICS}

    @property
    def input_topics(self) -> dict[str, Literal["clickstream", "orders"]]:
        """Input topic name -> the family of events it carries."""
        return {self.topic_clickstream: "clickstream", self.topic_orders: "orders"}

    def redacted(self) -> dict[str, object]:
        """Settings as a dict safe to log (secrets stay masked)."""
        shown: dict[str, object] = {k: (str(v) if isinstance(v, SecretStr) else v) for k, v in self}
        shown["redis_url"] = self.redis_shown
        return shown


def shown_url(url: str) -> str:
    """`url` with its password (if any) replaced by ***; everything else as it is. Read as
    text, not parsed: a password with an unencoded / # ? or @ must not fool the masking (it
    masks too much rather than too little)."""
    url = re.sub(r"([?&]password=)[^&]*", r"\1***", url)
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return url
    userinfo, host = rest.rsplit("@", 1)
    if ":" not in userinfo:
        return url
    return f"{scheme}://{userinfo.split(':', 1)[0]}:***@{host}"


def load_settings() -> Settings:
    """The settings from the environment; a wrong value is a ConfigurationError that names the
    variable, what it should be and (unless it is a secret) what it was."""
    try:
        return Settings()
    except ValidationError as exc:
        raise ConfigurationError(_explain(exc)) from None


def _explain(exc: ValidationError) -> str:
    fields = Settings.model_fields
    lines = []
    for error in exc.errors():
        name = str(error["loc"][0]) if error["loc"] else ""
        if not name:  # a rule across several settings: its message names them
            lines.append(error["msg"].removeprefix("Value error, "))
            continue
        field = fields.get(name)
        shown = field is not None and field.annotation is not SecretStr  # never a secret
        given = f"={error.get('input')!s}" if shown else ""
        about = f" ({field.description})" if field is not None and field.description else ""
        lines.append(f"TACT_{name.upper()}{given}: {_should(error['msg'])}{about}")
    return "bad setting: " + "; ".join(lines)


def _should(message: str) -> str:
    """pydantic's message as what the value should be."""
    if message.startswith("Path does not point to a file"):
        return "should be a readable file (none at that path, or it is a directory)"
    for prefix in ("Value error, ", "Input should be ", "Input should "):
        if message.startswith(prefix):
            rest = message.removeprefix(prefix)
            return f"should be {rest}" if prefix != "Input should " else f"should {rest}"
    return "should " + message.removeprefix("String should ")
