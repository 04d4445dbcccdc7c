"""The one settings object. Every value comes from a `TACT_`-prefixed environment variable
(or a `.env` file); nothing else in tact reads the environment.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from app.decode import DEFAULT_MAX_EVENT_BYTES
from app.errors import ConfigurationError

_REDIS_SCHEMES = ("redis://", "rediss://", "unix://")


class Settings(BaseSettings):
    """tact's configuration; see README "Configuration" for each variable."""

    model_config = SettingsConfigDict(env_prefix="TACT_", env_file=".env", extra="ignore")

    kafka_bootstrap: str = Field("127.0.0.1:9092", description="host:port[,host:port] of Kafka")
    redis_url: SecretStr = Field(
        SecretStr("redis://127.0.0.1:6379/0"),
        description="Redis URL; may hold a password, so it is secret",
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
    topic_replication: int = Field(1, ge=1, le=10)

    max_event_bytes: int = Field(DEFAULT_MAX_EVENT_BYTES, ge=1024, le=64 * 1024 * 1024)
    batch_max: int = Field(500, ge=1, le=100_000, description="events per processing batch")
    batch_within_s: float = Field(0.1, gt=0, le=10, description="max wait to fill a batch")
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
    session_timeout_s: float = Field(
        10.0, ge=6, le=300, description="consumer session timeout (failover time)"
    )
    state_ttl_days: int = Field(400, ge=1, description="idle customer state expires after this")
    max_cached_customers: int = Field(
        200_000, ge=100, description="customer states a worker keeps in memory (LRU)"
    )

    webhook_secret: SecretStr = Field(
        SecretStr(""), description="HMAC key the webhook connector signs requests with"
    )

    catalog: Path | None = Field(None, description="catalog JSONL (default: the demo catalog)")
    policy: Path | None = Field(None, description="policy YAML (default: the built-in policy)")
    seed: int = Field(0, description="engine seed")
    data_dir: Path = Field(Path(".run/worker"), description="the worker's local files (Faust's)")

    metrics_port: int = Field(9464, ge=0, le=65535, description="Prometheus port; 0 disables")
    metrics_host: str = Field(
        "127.0.0.1", description="address the status page listens on (0.0.0.0: every interface)"
    )
    lag_interval_s: float = Field(
        15.0, ge=1, le=3600, description="how often the worker reads its group's lag"
    )
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["auto", "json", "text"] = "auto"

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, value: SecretStr) -> SecretStr:
        if not value.get_secret_value().startswith(_REDIS_SCHEMES):
            raise ValueError(f"a URL starting with {', '.join(_REDIS_SCHEMES)}")
        return value

    @property
    def input_topics(self) -> dict[str, Literal["clickstream", "orders"]]:
        """Input topic name -> the family of events it carries."""
        return {self.topic_clickstream: "clickstream", self.topic_orders: "orders"}

    def redacted(self) -> dict[str, object]:
        """Settings as a dict safe to log (secrets stay masked)."""
        return {k: (str(v) if isinstance(v, SecretStr) else v) for k, v in self}


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
        field = fields.get(name)
        shown = field is not None and field.annotation is not SecretStr  # never a secret
        given = f"={error.get('input')!s}" if shown else ""
        about = f" ({field.description})" if field is not None and field.description else ""
        lines.append(f"TACT_{name.upper()}{given}: {_should(error['msg'])}{about}")
    return "bad setting: " + "; ".join(lines)


def _should(message: str) -> str:
    """pydantic's message as what the value should be."""
    for prefix in ("Value error, ", "Input should be ", "Input should "):
        if message.startswith(prefix):
            rest = message.removeprefix(prefix)
            return f"should be {rest}" if prefix != "Input should " else f"should {rest}"
    return "should " + message.removeprefix("String should ")
