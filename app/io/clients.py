"""Every Kafka and Redis client tact makes, built here from one set of settings.

Kafka: TACT_KAFKA_SECURITY_PROTOCOL, TACT_KAFKA_SASL_* and TACT_KAFKA_SSL_* become the options
of kafka-python, aiokafka and Faust in this module and nowhere else (a unit test fails if a
client is constructed in another module), so every command and connector connects the same way.
The clients take one `ssl.SSLContext` built from the same files, so what one trusts the
others trust. Producers wait for every in-sync replica (`acks=all`); kafka-python's and
aiokafka's are idempotent too (Faust's is only in its exactly-once mode, which tact does not use).

Redis: TACT_REDIS_URL (`rediss://` for TLS, `user:password@` for an ACL user) with
TACT_REDIS_SSL_*. `check_redis` says which of TLS, authentication or permission failed.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import socket
import ssl
import uuid
from collections.abc import Callable
from typing import Any, TypeVar, cast

import faust
import redis
import redis.asyncio as aioredis
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.errors import KafkaError, SaslAuthenticationFailedError, UnsupportedSaslMechanismError
from redis import exceptions as redis_errors

from app.errors import ConfigurationError, DependencyUnavailable
from app.settings import Settings

T = TypeVar("T")


def bootstrap(settings: Settings) -> list[str]:
    return [address.strip() for address in settings.kafka_bootstrap.split(",") if address.strip()]


def _uses_tls(settings: Settings) -> bool:
    return settings.kafka_security_protocol in ("SSL", "SASL_SSL")


def ssl_context(settings: Settings) -> ssl.SSLContext | None:
    """The TLS context of every Kafka client (None without TLS): the CA file or the system's
    trusted CAs, the client certificate for mutual TLS, hostname checks as set."""
    if not _uses_tls(settings):
        return None
    return _context(
        settings.kafka_ssl_cafile and str(settings.kafka_ssl_cafile),
        settings.kafka_ssl_certfile and str(settings.kafka_ssl_certfile),
        settings.kafka_ssl_keyfile and str(settings.kafka_ssl_keyfile),
        settings.kafka_ssl_key_password.get_secret_value() or None,
        settings.kafka_ssl_check_hostname,
    )


@functools.lru_cache(maxsize=8)
def _context(
    cafile: str | None,
    certfile: str | None,
    keyfile: str | None,
    password: str | None,
    check_hostname: bool,
) -> ssl.SSLContext:
    try:
        context = ssl.create_default_context(cafile=cafile)
    except (ssl.SSLError, OSError) as exc:
        raise ConfigurationError(
            f"TACT_KAFKA_SSL_CAFILE={cafile}: not a PEM file of CA certificates ({exc})"
        ) from None
    context.check_hostname = check_hostname
    if certfile:
        try:  # never None: OpenSSL would ask for the passphrase on the terminal
            context.load_cert_chain(certfile, keyfile, password or (lambda: b""))
        except (ssl.SSLError, OSError) as exc:
            if "KEY_VALUES_MISMATCH" in str(exc):
                hint = "the key does not belong to the certificate"
            elif password is None:
                hint = "the key is encrypted: set TACT_KAFKA_SSL_KEY_PASSWORD"
            else:
                hint = "check TACT_KAFKA_SSL_KEY_PASSWORD"
            raise ConfigurationError(
                f"TACT_KAFKA_SSL_CERTFILE={certfile} with TACT_KAFKA_SSL_KEYFILE={keyfile}: "
                f"cannot load the client certificate ({exc.__class__.__name__}: {exc}); {hint}"
            ) from None
    return context


def kafka_auth(settings: Settings) -> dict[str, Any]:
    """Security options, named as both kafka-python and aiokafka name them."""
    options: dict[str, Any] = {"security_protocol": settings.kafka_security_protocol}
    if settings.kafka_security_protocol.startswith("SASL_"):
        options |= {
            "sasl_mechanism": settings.kafka_sasl_mechanism,
            "sasl_plain_username": settings.kafka_sasl_username,
            "sasl_plain_password": settings.kafka_sasl_password.get_secret_value(),
        }
    context = ssl_context(settings)
    if context is not None:
        options["ssl_context"] = context
    return options


def kafka_options(settings: Settings) -> dict[str, Any]:
    """Options of a kafka-python client: the brokers and how to talk to them; a client that
    cannot bootstrap in TACT_KAFKA_CONNECT_TIMEOUT_S (10 s) gives up (and says why) instead of
    kafka-python's 30 s."""
    timeout_ms = int(settings.kafka_connect_timeout_s * 1000)
    return {"bootstrap_servers": bootstrap(settings), "bootstrap_timeout_ms": timeout_ms} | (
        kafka_auth(settings)
    )


def _durable(options: dict[str, Any]) -> dict[str, Any]:
    """acks=all and idempotence, unless the caller asks for fewer acks (a benchmark's load)."""
    acks = options.setdefault("acks", "all")
    options.setdefault("enable_idempotence", acks in ("all", -1))
    return options


def producer(settings: Settings, **options: Any) -> KafkaProducer:
    """A kafka-python producer: every in-sync replica acknowledges, and retries never write a
    record twice (idempotence). DependencyUnavailable, saying why, when it cannot connect."""
    return _connected(
        settings, lambda: KafkaProducer(**(kafka_options(settings) | _durable(options)))
    )


def consumer(settings: Settings, *topics: str, **options: Any) -> KafkaConsumer:
    """A consumer subscribed to `topics`, with their metadata fetched: a group's first
    assignment is made from the metadata its leader has then, and without it kafka-python's
    assignor finds no partitions ("No partition metadata for topic ..."), assigns none and
    has the group rebalance again once the metadata comes."""

    def build() -> KafkaConsumer:
        made = KafkaConsumer(*topics, **(kafka_options(settings) | options))
        for topic in topics:
            made.partitions_for_topic(topic)
        return made

    return _connected(settings, build)


def admin(settings: Settings, **options: Any) -> KafkaAdminClient:
    return _connected(settings, lambda: KafkaAdminClient(**(kafka_options(settings) | options)))


class _Refusals(logging.Handler):
    """Keeps the errors kafka-python logs while it bootstraps: its final error is only a
    timeout, but a refused SASL login is logged on the way."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.errors: list[BaseException] = []

    def emit(self, record: logging.LogRecord) -> None:
        args = record.args if isinstance(record.args, tuple) else ()
        self.errors += [a for a in args if isinstance(a, BaseException)]


def _connected(settings: Settings, build: Callable[[], T]) -> T:
    """`build()`, or DependencyUnavailable saying why it could not connect. What kafka-python
    logs while it bootstraps (a warning per failed try) is kept for that message, not shown:
    the one line that says why replaces a screenful of retries."""
    refusals = _Refusals()
    kafka_log = logging.getLogger("kafka")
    kafka_log.addHandler(refusals)
    propagate, kafka_log.propagate = kafka_log.propagate, False
    try:
        return build()
    except KafkaError as exc:
        seen = [exc, *refusals.errors]
        raise DependencyUnavailable(kafka_unreachable(settings, *seen)) from exc
    finally:
        kafka_log.propagate = propagate
        kafka_log.removeHandler(refusals)


def kafka_unreachable(settings: Settings, exc: BaseException, *seen: BaseException) -> str:
    """Why a client could not talk to Kafka, as precisely as the error and a probe of the
    first broker can tell: nothing listening, the TLS handshake (which side refused, and
    why), or the SASL credentials."""
    where = settings.kafka_bootstrap
    if any(_refused_sasl(e) for e in (exc, *seen)):
        return (
            f"Kafka at {where} refused the SASL credentials (mechanism "
            f"{settings.kafka_sasl_mechanism}, user {settings.kafka_sasl_username!r}): check "
            "TACT_KAFKA_SASL_USERNAME, TACT_KAFKA_SASL_PASSWORD and TACT_KAFKA_SASL_MECHANISM"
        )
    unsupported = [e for e in (exc, *seen) if isinstance(e, UnsupportedSaslMechanismError)]
    if unsupported:
        return (
            f"Kafka at {where} does not offer TACT_KAFKA_SASL_MECHANISM="
            f"{settings.kafka_sasl_mechanism} ({unsupported[0]})"
        )
    probe = _probe(settings)
    if probe:
        return probe
    protocol = settings.kafka_security_protocol
    # Something listens there and, with TLS, the handshake works: yet no Kafka answer.
    tls = " and the TLS handshake works" if protocol.endswith("SSL") else ""
    return (
        f"something answers at {where}{tls}, but not as a Kafka {protocol} listener ({exc}): "
        "check that TACT_KAFKA_SECURITY_PROTOCOL is what that port speaks (SASL_SSL for "
        "MSK's 9096 and Confluent Cloud, SSL for mutual TLS"
        + (
            f"; with SASL, that TACT_KAFKA_SASL_MECHANISM={settings.kafka_sasl_mechanism} and "
            "the credentials are right)"
            if protocol.startswith("SASL_")
            else ")"
        )
    )


def _refused_sasl(exc: BaseException | None) -> bool:
    while exc is not None:
        if isinstance(exc, SaslAuthenticationFailedError) or "uthentication failed" in str(exc):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def _probe(settings: Settings, timeout_s: float = 5.0) -> str:
    """What a plain connection to the first broker shows ('' when nothing is wrong there)."""
    address = bootstrap(settings)[0]
    host, _, port = address.rpartition(":")
    try:
        sock = socket.create_connection((host, int(port)), timeout=timeout_s)
    except (OSError, ValueError) as exc:
        return (
            f"no Kafka broker answers at {address} ({exc}): start one with `make up`, or set "
            "TACT_KAFKA_BOOTSTRAP"
        )
    context = ssl_context(settings)
    if context is None:
        sock.close()
        return ""
    try:
        with context.wrap_socket(sock, server_hostname=host) as tls:
            tls.settimeout(1.0)
            with contextlib.suppress(TimeoutError):  # TLS 1.3: a refused client
                tls.recv(1)  # certificate shows on the first read
    except ssl.SSLCertVerificationError as exc:
        if "mismatch" in (exc.verify_message or ""):
            return (
                f"the certificate of the Kafka broker at {address} does not name {host} "
                f"({exc.verify_message}): connect by a name it holds, or set "
                "TACT_KAFKA_SSL_CHECK_HOSTNAME=false"
            )
        return (
            f"the certificate of the Kafka broker at {address} is not trusted "
            f"({exc.verify_message}): set TACT_KAFKA_SSL_CAFILE to the CA that signed it"
        )
    except ssl.SSLError as exc:
        reason = exc.reason or str(exc)
        if "CERTIFICATE" in reason.upper() or "UNKNOWN_CA" in reason.upper():
            return (
                f"the Kafka broker at {address} refused tact's client certificate ({reason}): "
                "set TACT_KAFKA_SSL_CERTFILE and TACT_KAFKA_SSL_KEYFILE to a certificate that "
                "the broker's CA signed"
            )
        return (
            f"the TLS handshake with the Kafka broker at {address} failed ({reason}); is "
            f"TACT_KAFKA_SECURITY_PROTOCOL={settings.kafka_security_protocol} what that "
            "listener speaks?"
        )
    except OSError as exc:
        return f"the TLS connection to the Kafka broker at {address} failed ({exc})"
    return ""


def aiokafka_producer(settings: Settings, **options: Any) -> Any:
    """An aiokafka producer (the benchmarks' raw floor), acks=all and idempotent."""
    from aiokafka import AIOKafkaProducer

    brokers = {"bootstrap_servers": bootstrap(settings)}
    return AIOKafkaProducer(**(brokers | kafka_auth(settings) | _durable(options)))


def aiokafka_consumer(settings: Settings, *topics: str, **options: Any) -> Any:
    from aiokafka import AIOKafkaConsumer

    brokers = {"bootstrap_servers": bootstrap(settings)}
    return AIOKafkaConsumer(*topics, **(brokers | kafka_auth(settings) | options))


def faust_app(settings: Settings, **options: Any) -> faust.App:
    """The worker's Faust app on the configured brokers and credentials. Faust makes the
    protocol SASL_SSL only when SASLCredentials carries an ssl_context, so it always does with
    TLS; without SASL, TLS is SSLCredentials."""
    context = ssl_context(settings)
    credentials: faust.types.auth.CredentialsT | None = None
    if settings.kafka_security_protocol.startswith("SASL_"):
        credentials = faust.SASLCredentials(
            username=settings.kafka_sasl_username,
            password=settings.kafka_sasl_password.get_secret_value(),
            ssl_context=context,
            mechanism=settings.kafka_sasl_mechanism,
        )
    elif context is not None:
        credentials = faust.SSLCredentials(context)
    return faust.App(
        settings.app_id,
        broker=[f"kafka://{address}" for address in bootstrap(settings)],
        broker_credentials=credentials,
        **options,
    )


def redis_options(settings: Settings) -> dict[str, Any]:
    """TLS options for a rediss:// URL (none otherwise: redis-py refuses them on redis://)."""
    if not settings.redis_url.get_secret_value().startswith("rediss://"):
        return {}
    options: dict[str, Any] = {}
    for option, path in (
        ("ssl_ca_certs", settings.redis_ssl_ca_certs),
        ("ssl_certfile", settings.redis_ssl_certfile),
        ("ssl_keyfile", settings.redis_ssl_keyfile),
    ):
        if path is not None:
            options[option] = str(path)
    return options


def redis_client(settings: Settings, **options: Any) -> redis.Redis:
    """A synchronous Redis client on TACT_REDIS_URL with its TLS settings (a RedisCluster
    when the URL names a node of a Redis Cluster)."""
    url, options = settings.redis_url.get_secret_value(), redis_options(settings) | options
    if redis_is_cluster(settings):
        cluster: Any = redis.RedisCluster.from_url(url, **options)  # (the same commands)
        return cast(redis.Redis, cluster)
    return redis.Redis.from_url(url, **options)


def redis_async(settings: Settings, **options: Any) -> aioredis.Redis:
    """An asyncio client, as `redis_client`."""
    url, options = settings.redis_url.get_secret_value(), redis_options(settings) | options
    if redis_is_cluster(settings):
        cluster: Any = aioredis.RedisCluster.from_url(url, **options)
        return cast(aioredis.Redis, cluster)
    return aioredis.Redis.from_url(url, **options)


_CLUSTER: dict[str, bool] = {}


def redis_is_cluster(settings: Settings) -> bool:
    """Whether TACT_REDIS_URL names a node of a Redis Cluster (asked with INFO once per
    process, once it answers; a user the ACL refuses INFO is taken to be on one server)."""
    url = settings.redis_url.get_secret_value()
    if url not in _CLUSTER:
        probe = redis.Redis.from_url(
            url, socket_connect_timeout=5, socket_timeout=10, **redis_options(settings)
        )
        try:
            _CLUSTER[url] = bool(probe.info("cluster").get("cluster_enabled"))
        except redis_errors.NoPermissionError:
            _CLUSTER[url] = False
        except (redis_errors.ConnectionError, redis_errors.TimeoutError, OSError):
            return False  # (not known yet: a client for one server, whose calls fail as such)
        finally:
            probe.close()
    return _CLUSTER[url]


def redis_async_pool(settings: Settings, **options: Any) -> aioredis.Redis:
    """An asyncio client whose requests wait for a free connection under a burst instead of
    failing (the onsite API)."""
    url = settings.redis_url.get_secret_value()
    pool = aioredis.BlockingConnectionPool.from_url(url, **(redis_options(settings) | options))
    return aioredis.Redis(connection_pool=pool)


def check_redis(settings: Settings) -> None:
    """Fail fast with what failed, when Redis cannot be used: no answer, the TLS handshake,
    the credentials, or a command the ACL user may not run (tact reads and writes its own
    keys and runs Lua scripts)."""
    shown = settings.redis_shown
    probe = f"{{{settings.redis_prefix}}}:probe:{uuid.uuid4().hex}"
    client: Any = None
    try:
        client = redis_client(settings, socket_connect_timeout=5, socket_timeout=10)
        client.ping()
        client.set(probe, b"1", ex=60)
        client.eval("return redis.call('del', KEYS[1])", 1, probe)
    except redis_errors.AuthenticationError as exc:
        raise DependencyUnavailable(
            f"Redis at {shown} refused the credentials ({exc}): check the user and password "
            "in TACT_REDIS_URL (redis[s]://user:password@host:port/db)"
        ) from None
    except redis_errors.NoPermissionError as exc:
        raise DependencyUnavailable(
            f"Redis at {shown}: the user may not do what tact needs ({exc}); its ACL must allow "
            f"reading and writing keys tact:{settings.app_id}:* and {{tact:{settings.app_id}* "
            "and running scripts (e.g. `~tact:* ~{tact:* +@read +@write +@keyspace +@scripting "
            "+@transaction +ping +select +time`; on a Redis Cluster also `+info +command "
            "+cluster|slots +cluster|shards`)"
        ) from None
    except (redis_errors.ConnectionError, redis_errors.TimeoutError, OSError) as exc:
        raise DependencyUnavailable(_redis_unreachable(settings, exc)) from None
    except redis_errors.ResponseError as exc:
        raise DependencyUnavailable(f"Redis at {shown} refused tact's probe: {exc}") from None
    except redis_errors.RedisClusterException as exc:  # (no node of the cluster answers)
        raise DependencyUnavailable(f"the Redis Cluster at {shown}: {exc}") from None
    finally:
        if client is not None:
            client.close()


def _redis_unreachable(settings: Settings, exc: BaseException) -> str:
    shown = settings.redis_shown
    text = str(exc)
    if "match" in text and "certificate" in text:
        return (
            f"the certificate of Redis at {shown} does not name that host ({text}): connect by "
            "a name the certificate holds"
        )
    if "SSL" in text or "certificate" in text or isinstance(exc.__cause__, ssl.SSLError):
        return (
            f"the TLS handshake with Redis at {shown} failed ({text}): check "
            "TACT_REDIS_SSL_CA_CERTS (the CA that signed the server's certificate) and, when "
            "the server asks for one, TACT_REDIS_SSL_CERTFILE / TACT_REDIS_SSL_KEYFILE"
        )
    url = settings.redis_url.get_secret_value()
    if url.startswith("redis://") and ("reset" in text or "closed" in text):
        return (
            f"Redis at {shown} closed the connection ({text}); if it serves TLS, use a "
            "rediss:// URL"
        )
    if url.startswith("rediss://") and "imed out" in text:
        return (
            f"Redis at {shown} did not complete a TLS handshake ({text}); if it does not serve "
            "TLS, use a redis:// URL"
        )
    return (
        f"Redis does not answer at {shown} ({text}); start it with `make up`, or set TACT_REDIS_URL"
    )
