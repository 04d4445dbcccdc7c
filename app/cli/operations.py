"""The operations commands: `tact connector`, `tact lag`, `tact ingest`, `tact produce`."""

from __future__ import annotations

import argparse
import re
from typing import Any

from app.cli.options import TIME_FORMS, at_least, margin_rate, non_negative, positive
from app.errors import ConfigurationError


def cmd_connector_run(args: argparse.Namespace) -> int:
    import logging.config

    from app.connectors.run import run
    from app.connectors.sdk import channels_of
    from app.connectors.webhook import Webhook
    from app.logs import logging_config
    from app.settings import load_settings

    settings = load_settings()
    logging.config.dictConfig(logging_config(settings.log_level, settings.log_format))
    if args.instance and args.name != "webhook":
        raise ConfigurationError(
            f"--name is for webhook connectors; {args.name} runs once per TACT_APP_ID"
        )
    if args.name == "paid-audience":
        run(settings, _paid_audience(settings))
        return 0
    if args.name == "onsite":
        return _run_onsite(settings, args.host, args.port)
    secret = settings.webhook_secret.get_secret_value().encode()
    if not secret:
        raise ConfigurationError("set TACT_WEBHOOK_SECRET: the webhook connector signs requests")
    if not args.url:
        raise ConfigurationError("give --url, where the webhook connector POSTs")
    _check_url(args.url)
    name = args.instance or "webhook"
    if not re.fullmatch(r"[A-Za-z0-9._-]{1,64}", name):
        raise ConfigurationError(f"--name {name!r}: use letters, digits, '.', '_' or '-'")
    channels = channels_of(args.channels.split(","))
    connector = Webhook(args.url, secret, channels, name=name)
    run(settings, connector, retry_for_s=args.retry_for * 3600)
    return 0


def _check_url(url: str) -> None:
    """A webhook URL must be one a POST can reach: checked at start, not at the first due
    delivery hours later."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises on a port that is not a number
    except ValueError as exc:
        raise ConfigurationError(f"--url is not a URL ({exc})") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        # the scheme and host only: the rest of a URL may carry a token
        shown = f"{parts.scheme or '(no scheme)'}://{parts.hostname or '(no host)'}"
        raise ConfigurationError(
            f"--url {shown}/...: give an http:// or https:// URL with a host "
            "(e.g. https://shop.example/tact/actions)"
        )


def _run_onsite(settings: Any, host: str, port: int) -> int:
    """The onsite connector's delivery loop in a thread, its HTTP API in the main one."""
    import threading

    from aiohttp import web

    from app.connectors.onsite import Onsite, make_app
    from app.connectors.run import run
    from app.io import clients

    prefix = settings.redis_prefix
    clients.check_redis(settings)
    stop = threading.Event()
    loop = threading.Thread(
        target=run,
        args=(settings, Onsite(clients.redis_client(settings), prefix), stop),
        name="tact-onsite-delivery",
        daemon=True,
    )
    loop.start()
    # A blocking pool: under a burst a request waits for a free connection instead of failing.
    app = make_app(clients.redis_async_pool(settings, max_connections=64, timeout=5), prefix)

    async def stopped(_: web.Application) -> None:
        stop.set()

    app.on_cleanup.append(stopped)
    import gc

    gc.freeze()  # what start-up made is never garbage: keep it out of the collector's scans
    import uvloop

    web.run_app(
        app, host=host, port=port, print=None, access_log=None, loop=uvloop.new_event_loop()
    )
    loop.join(timeout=10)
    return 0


def _paid_audience(settings: Any) -> Any:
    from app.connectors.paid_audience import PaidAudience
    from app.io import clients

    clients.check_redis(settings)
    return PaidAudience(clients.redis_client(settings), settings.redis_prefix)


def cmd_connector_redrive(args: argparse.Namespace) -> int:
    """Put a connector's dead letters back into its waiting set in Redis."""
    from app.cli.report import parse_time
    from app.connectors.redrive import redrive
    from app.settings import load_settings

    settings = load_settings()
    since = parse_time(args.since)
    since_ms = None if since is None else int(since * 1000)
    done = redrive(settings, args.name, since_ms)
    print(done.line(args.name))
    return 0


def cmd_connector_receive(args: argparse.Namespace) -> int:
    """A receiver for the webhook connector, printing each Action it gets, until Ctrl-C."""
    import signal

    from app.connectors.receiver import Receiver
    from app.settings import load_settings

    secret = load_settings().webhook_secret.get_secret_value()
    if not secret:
        raise ConfigurationError("set TACT_WEBHOOK_SECRET, the same as the webhook connector's")
    try:
        receiver = Receiver(secret, lambda text: print(text, flush=True), args.host, args.port)
    except OSError as exc:
        raise ConfigurationError(
            f"cannot listen on {args.host}:{args.port} ({exc.strerror}): give another --port"
        ) from None

    def stop(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    print(
        f"receiving the webhook's POSTs at http://{args.host}:{receiver.port}/ (any path), "
        "signatures checked with TACT_WEBHOOK_SECRET; Ctrl-C stops",
        flush=True,
    )
    try:
        receiver.server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        receiver.server.server_close()
    print(receiver.summary(), flush=True)
    return 0


def cmd_connector_export(args: argparse.Namespace) -> int:
    from app.connectors.paid_audience import write_audience
    from app.settings import load_settings

    size = write_audience(_paid_audience(load_settings()), args.out)
    print(f"{size:,} customers suppressed from paid retargeting now -> {args.out}")
    return 0


def cmd_lag(args: argparse.Namespace) -> int:
    from app.cli.lag import run_lag

    return run_lag(args)


def cmd_ingest(args: argparse.Namespace) -> int:
    from app.cli.datasets import run_ingest

    return run_ingest(args.dataset, args.source, args.catalog, args.margin, args.rate)


def cmd_produce(args: argparse.Namespace) -> int:
    from app.cli.produce import run_produce

    return run_produce(args.file, args.rate, args.dead_letter)


def add_commands(sub: Any) -> None:
    """Register the operations commands on the `tact` subparsers."""
    connector = sub.add_parser(
        "connector",
        help="deliver Actions to a channel",
        description="Run a connector (webhook, onsite API, paid-audience), send a connector's "
        "dead letters again, export the paid-retargeting suppression list, or run a receiver "
        "to try the webhook with (README: Connectors).",
    )
    connector_sub = connector.add_subparsers(
        dest="connector_command", required=True, metavar="ACTION"
    )
    connector_run = connector_sub.add_parser(
        "run",
        help="run a connector until stopped",
        description="Consume the actions topic in the connector's own consumer group and "
        "deliver the Actions of its channels by the connector contract (README: Connectors).",
    )
    connector_run.add_argument(
        "name", choices=("webhook", "onsite", "paid-audience"), help="which connector"
    )
    connector_run.add_argument(
        "--url",
        help="webhook: where to POST each Action (its form is checked at start); the "
        "webhook also needs TACT_WEBHOOK_SECRET, the key of the requests' signatures",
    )
    connector_run.add_argument(
        "--name",
        dest="instance",
        help="webhook: this connector's name (default webhook): its consumer group is "
        "tact-connector-NAME; each configuration (channels, URL) needs its own",
    )
    connector_run.add_argument(
        "--channels",
        default="email,sms",
        help="channels to deliver, comma-separated (default: email,sms)",
    )
    connector_run.add_argument(
        "--retry-for",
        type=positive,
        default=6.0,
        metavar="HOURS",
        help="webhook: a delivery that keeps failing (receiver down, 5xx, timeouts) waits in "
        "Redis and is tried again for this long before it is a dead letter (default 6)",
    )
    connector_run.add_argument("--host", default="0.0.0.0", help="onsite: the API's address")
    connector_run.add_argument("--port", type=int, default=8088, help="onsite: the API's port")
    connector_run.set_defaults(func=cmd_connector_run)
    redrive = connector_sub.add_parser(
        "redrive",
        help="send a connector's dead letters again (after the receiver is fixed)",
        description="Read connector-dead-letters, take those of connector NAME (a webhook's "
        "--name, default webhook; or onsite, paid-audience) and put each back into that "
        "connector's waiting set in Redis, due now: the running connector delivers them "
        "(an Action delivered since is not sent twice; an expired one is left out).",
    )
    redrive.add_argument("name", help="the connector's name, e.g. webhook")
    redrive.add_argument(
        "--since", help=f"only dead letters written at or after this time, {TIME_FORMS}"
    )
    redrive.set_defaults(func=cmd_connector_redrive)
    receive = connector_sub.add_parser(
        "receive",
        help="a receiver for trying the webhook connector: prints each Action it gets",
        description="Listen for the webhook connector's POSTs (any path), check each one's "
        "signature with TACT_WEBHOOK_SECRET (401 when it does not match: the connector "
        "dead-letters it), and print each Action received once as a line; Ctrl-C prints how "
        "many by channel. For trying tact end to end, not for production (README: Connectors).",
    )
    receive.add_argument("--host", default="127.0.0.1", help="address (default 127.0.0.1)")
    receive.add_argument("--port", type=int, default=8000, help="port (default 8000; 0: any)")
    receive.set_defaults(func=cmd_connector_receive)
    export = connector_sub.add_parser(
        "export",
        help="paid-audience: the customers suppressed from paid retargeting now, as CSV",
        description="Write the customers whose paid retargeting is suppressed now (every Action "
        "that suppresses it, holdout Actions too, as kept by `tact connector run "
        "paid-audience`) as a CSV audience file, for an ad platform's exclusion list (README: "
        "Connectors).",
    )
    export.add_argument("name", choices=("paid-audience",))
    export.add_argument("--out", required=True, help="the CSV audience file to write")
    export.set_defaults(func=cmd_connector_export)

    lag = sub.add_parser(
        "lag",
        help="consumer lag per group, topic and partition (exit 1 over a threshold)",
        description="Per consumer group, topic and partition: the committed offset, the log end "
        "offset, the lag between them (as Kafka's consumer-groups tool reports them) and the "
        "time lag, the age of the oldest record not yet processed. Exits 1 when any partition "
        "is over --max-lag or --max-time-lag, for scripts and alerts.",
    )
    lag.add_argument(
        "--group", action="append", help="consumer group (repeatable; default: TACT_APP_ID)"
    )
    lag.add_argument(
        "--max-lag", type=at_least(0), help="records: exit 1 when a partition lags more"
    )
    lag.add_argument(
        "--max-time-lag", type=non_negative, help="seconds: exit 1 when older than this"
    )
    lag.add_argument("--json", action="store_true", help="print JSON instead of a table")
    lag.set_defaults(func=cmd_lag)

    ingest = sub.add_parser(
        "ingest",
        help="produce a public dataset into the input topics, in tact's schema",
        description="Convert a public dataset (uci: UCI Online Retail; rees46: the REES46 "
        "clickstream) and produce its events into the clickstream and orders topics (TACT_* "
        "settings), keyed by customer, each record's timestamp its event's time.",
    )
    ingest.add_argument("dataset", choices=("uci", "rees46"))
    ingest.add_argument("--source", required=True, help="the dataset's CSV (.csv or .csv.gz)")
    ingest.add_argument("--catalog", help="also write the inferred catalog (JSONL) here")
    ingest.add_argument("--margin", type=margin_rate, help="gross margin assumed for unit costs")
    ingest.add_argument("--rate", type=positive, help="events per second at most (default: all)")
    ingest.set_defaults(func=cmd_ingest)

    produce = sub.add_parser(
        "produce",
        help="produce a JSONL file of your own events into the input topics",
        description="Send each line of FILE (one event in tact's schema per line: README, "
        "Events) to the topic of its type (clickstream or orders, TACT_TOPIC_*), keyed by "
        "customer_id, with the event's time as the record's timestamp, as written. Lines that "
        "are not valid events are not produced: they go to a dead-letter file with the reason. "
        "Events already older than the policy's freshness.max_lag_seconds (TACT_POLICY) are "
        "sent with a warning: a worker takes them for stale and delivers none of their Actions "
        "(`tact sample --start now` dates a sample now).",
    )
    produce.add_argument("file", help="the events (JSONL)")
    produce.add_argument("--rate", type=positive, help="events per second at most (default: all)")
    produce.add_argument(
        "--dead-letter",
        help="where lines that are not events go (default for events.jsonl: "
        "events.dead-letters.jsonl)",
    )
    produce.set_defaults(func=cmd_produce)
