"""The `tact` command."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from app import codec
from app.errors import ConfigurationError, TactError


def _render_schemas() -> dict[str, bytes]:
    from schemas.export import documents

    return {name: codec.dumps_sorted(doc) + b"\n" for name, doc in documents().items()}


def cmd_schemas_export(args: argparse.Namespace) -> int:
    from schemas.export import JSON_DIR, stale_files

    out = Path(args.out) if args.out else JSON_DIR
    rendered = _render_schemas()
    if args.check:
        stale = stale_files(out, rendered)
        if stale:
            print(
                f"schemas in {out} are out of date: {', '.join(stale)}; run `tact schemas export`",
                file=sys.stderr,
            )
            return 1
        print(f"{len(rendered)} schemas in {out} are up to date")
        return 0
    out.mkdir(parents=True, exist_ok=True)
    for stray in stale_files(out, rendered):
        if stray not in rendered:
            (out / stray).unlink()
    for name, data in rendered.items():
        (out / name).write_bytes(data)
    print(f"wrote {len(rendered)} schemas to {out}")
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    from app.io.worker import run_worker
    from app.settings import Settings

    run_worker(Settings())
    return 0


def cmd_topics_create(args: argparse.Namespace) -> int:
    from app.io.kafka_admin import ensure_topics
    from app.settings import Settings

    settings = Settings()
    created = ensure_topics(settings)
    print(f"created: {', '.join(created)}" if created else "all topics exist")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from app.cli.demo import Demo
    from app.settings import Settings

    demo = Demo(
        Settings(),
        customers=args.customers,
        rate=args.rate,
        seed=args.seed,
        log_dir=Path(args.log_dir),
        colour=sys.stdout.isatty(),
    )
    return demo.run(wait=not args.exit_when_done)


def cmd_replay(args: argparse.Namespace) -> int:
    from app.cli.replay import run_replay, run_replay_topics

    if args.from_topics:
        if args.events is not None:
            raise ConfigurationError("give EVENTS or --from-topics, not both")
        return run_replay_topics(args)
    if args.events is None:
        raise ConfigurationError("give EVENTS (a file, or - for stdin) or --from-topics")
    if args.report or args.evaluate:
        raise ConfigurationError("--report and --evaluate go with --from-topics")

    return run_replay(args)


def cmd_sample(args: argparse.Namespace) -> int:
    from app.cli.sample import run_sample

    return run_sample(args.customers, args.seed, args.events, args.catalog)


def cmd_policy_validate(args: argparse.Namespace) -> int:
    from app.cli.policy import run_validate

    return run_validate(args.file)


def cmd_policy_explain(args: argparse.Namespace) -> int:
    from app.cli.policy import run_explain

    return run_explain(
        args.customer_id, args.events, args.catalog, args.policy, args.seed, args.top
    )


def cmd_simulate(args: argparse.Namespace) -> int:
    from app.cli.simulate import run_simulate

    return run_simulate(
        args.customers,
        args.days,
        args.seed,
        args.world,
        args.policy,
        args.catalog,
        args.out,
        [p.strip() for p in args.policies.split(",") if p.strip()],
        args.json,
    )


def cmd_report(args: argparse.Namespace) -> int:
    from app.cli.report import run_report

    return run_report(args)


def cmd_evaluate(args: argparse.Namespace) -> int:
    from app.cli.evaluate import run_evaluate

    return run_evaluate(args)


def cmd_connector_run(args: argparse.Namespace) -> int:
    import logging.config

    from app.connectors.run import run
    from app.connectors.sdk import channels_of
    from app.connectors.webhook import Webhook
    from app.logs import logging_config
    from app.settings import Settings

    settings = Settings()
    logging.config.dictConfig(logging_config(settings.log_level, settings.log_format))
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
    connector = Webhook(args.url, secret, channels_of(args.channels.split(",")))
    run(settings, connector)
    return 0


def _run_onsite(settings: Any, host: str, port: int) -> int:
    """The onsite connector's delivery loop in a thread, its HTTP API in the main one."""
    import threading

    import redis
    import redis.asyncio as aioredis
    from aiohttp import web

    from app.connectors.onsite import Onsite, make_app
    from app.connectors.run import run

    prefix = f"tact:{settings.app_id}"
    url = settings.redis_url.get_secret_value()
    stop = threading.Event()
    loop = threading.Thread(
        target=run,
        args=(settings, Onsite(redis.Redis.from_url(url), prefix), stop),
        name="tact-onsite-delivery",
        daemon=True,
    )
    loop.start()
    # A blocking pool: under a burst a request waits for a free connection instead of failing.
    pool = aioredis.BlockingConnectionPool.from_url(url, max_connections=64, timeout=5)
    app = make_app(aioredis.Redis(connection_pool=pool), prefix)

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
    import redis

    from app.connectors.paid_audience import PaidAudience

    store = redis.Redis.from_url(settings.redis_url.get_secret_value())
    return PaidAudience(store, f"tact:{settings.app_id}")


def cmd_connector_export(args: argparse.Namespace) -> int:
    from app.connectors.paid_audience import write_audience
    from app.settings import Settings

    size = write_audience(_paid_audience(Settings()), args.out)
    print(f"{size:,} customers suppressed from paid retargeting now -> {args.out}")
    return 0


def cmd_lag(args: argparse.Namespace) -> int:
    from app.cli.lag import run_lag

    return run_lag(args)


def cmd_datasets(args: argparse.Namespace) -> int:
    from app.cli.datasets import run_dataset

    return run_dataset(args.dataset, args.source, args.events, args.catalog, args.margin)


def cmd_ingest(args: argparse.Namespace) -> int:
    from app.cli.datasets import run_ingest

    return run_ingest(args.dataset, args.source, args.catalog, args.margin, args.rate)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tact",
        description="Event-streaming decision engine for e-commerce upsells and cross-sells.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    worker = sub.add_parser("worker", help="run the Faust worker (settings from TACT_* env)")
    worker.set_defaults(func=cmd_worker)

    schemas = sub.add_parser("schemas", help="JSON Schema files of the event contract")
    schemas_sub = schemas.add_subparsers(dest="schemas_command", required=True, metavar="ACTION")
    export = schemas_sub.add_parser("export", help="write schemas/json/*.json")
    export.add_argument("--out", help="directory (default: the package's schemas/json)")
    export.add_argument(
        "--check",
        action="store_true",
        help="write nothing; exit 1 when the files differ from the models",
    )
    export.set_defaults(func=cmd_schemas_export)

    replay = sub.add_parser(
        "replay",
        help="run the engine over a file of events and write the actions",
        description="Run the decision engine over EVENTS (one JSON event per line, - for stdin) "
        "and write one Action per line to --out, and one Outcome per Action to --outcomes. Bad "
        "lines go to the dead-letter file with a reason; the summary goes to stderr.",
    )
    replay.add_argument("events", nargs="?", help="events file (JSONL), or - for stdin")
    replay.add_argument("--catalog", required=True, help="catalog JSONL file")
    replay.add_argument("--policy", help="policy YAML file (default: the built-in policy)")
    replay.add_argument("--seed", type=int, default=0, help="seed (default 0)")
    replay.add_argument("--out", required=True, help="actions file (JSONL), or - for stdout")
    replay.add_argument("--dead-letter", help="dead-letter file (default: OUT.dead-letters.jsonl)")
    replay.add_argument(
        "--outcomes",
        help="outcomes file, one per action as its window closes; windows still open at the "
        "end are written as censored (default: OUT.outcomes.jsonl)",
    )
    replay.add_argument(
        "--strict", action="store_true", help="exit with status 1 when any line was a dead letter"
    )
    backtest = replay.add_argument_group(
        "backtests from the topics",
        "Read clickstream and orders from Kafka by record time (TACT_* settings; offsets for "
        "times per partition, never joining a consumer group) and replay them as a file would "
        "be, in record-time order.",
    )
    backtest.add_argument("--from-topics", action="store_true", help="read the input topics")
    backtest.add_argument("--since", help="range start, ISO-8601 with a zone (default: all)")
    backtest.add_argument("--until", help="range end, ISO-8601 with a zone (default: all)")
    backtest.add_argument("--report", help="also write the report of the replay to this directory")
    backtest.add_argument(
        "--evaluate",
        action="store_true",
        help="also estimate what --policy would have earned on the actions the live worker "
        "logged in the range (topics actions and outcomes): off-policy evaluation",
    )
    replay.set_defaults(func=cmd_replay)

    policy = sub.add_parser("policy", help="check a policy file, or explain its decisions")
    policy_sub = policy.add_subparsers(dest="policy_command", required=True, metavar="ACTION")
    validate = policy_sub.add_parser("validate", help="check a policy YAML file")
    validate.add_argument("file")
    validate.set_defaults(func=cmd_policy_validate)
    explain = policy_sub.add_parser(
        "explain",
        help="why each candidate was chosen or dropped for one customer",
        description="Replay EVENTS and show, for every decision moment of CUSTOMER_ID, the "
        "readiness, segments and rules, what was dropped and why, the candidates ranked by "
        "expected incremental profit, and the actions sent.",
    )
    explain.add_argument("customer_id")
    explain.add_argument("--events", required=True, help="events file (JSONL)")
    explain.add_argument("--catalog", required=True, help="catalog JSONL file")
    explain.add_argument("--policy", help="policy YAML file (default: the built-in policy)")
    explain.add_argument("--seed", type=int, default=0)
    explain.add_argument("--top", type=int, default=8, help="candidates shown per moment")
    explain.set_defaults(func=cmd_policy_explain)

    sample = sub.add_parser("sample", help="write a generated event stream and the demo catalog")
    sample.add_argument("--customers", type=int, default=1000)
    sample.add_argument("--seed", type=int, default=0)
    sample.add_argument("--events", required=True, help="where to write the events (JSONL)")
    sample.add_argument("--catalog", help="where to write the demo catalog (JSONL)")
    sample.set_defaults(func=cmd_sample)

    simulate = sub.add_parser(
        "simulate",
        help="the engine against baselines on a simulated population, in a closed loop",
        description="Simulate a population of customers whose responses follow a ground truth "
        "(the default world, or --world FILE), and run the engine and the baselines on it in a "
        "closed loop: events -> actions -> responses -> outcomes. Every policy meets the same "
        "customers with the same random draws. Prints the profit each really earned and the "
        "incremental profit over never upselling.",
    )
    simulate.add_argument("--customers", type=int, help="customers (default: the world's, 3000)")
    simulate.add_argument("--days", type=float, help="horizon in days (default: the world's, 60)")
    simulate.add_argument("--seed", type=int, default=0, help="seed of customers and draws")
    simulate.add_argument("--world", help="ground truth YAML (keys of app/simulate/world.py)")
    simulate.add_argument("--policy", help="the engine's policy YAML (default: the built-in)")
    simulate.add_argument("--catalog", help="catalog JSONL (default: the demo catalog)")
    simulate.add_argument("--out", help="write the engine's events, actions and outcomes here")
    simulate.add_argument(
        "--policies",
        default=",".join(("tact", "never", "always", "random")),
        help="which to run, comma-separated (default: tact,never,always,random)",
    )
    simulate.add_argument("--json", action="store_true", help="print the figures as JSON")
    simulate.set_defaults(func=cmd_simulate)

    report = sub.add_parser(
        "report",
        help="incremental profit, holdouts and experiments: an HTML report and a summary",
        description="Measure what tact really added: profit per customer treated vs the global "
        "holdout (bootstrap and CUPED intervals), per play, channel, frame and segment; per-play "
        "holdouts; second purchase velocity; subscription, return and unsubscribe rates; channel "
        "cannibalisation from the suppression tests; and the frame tests. Writes DIR/report.html "
        "(self-contained, with plots) and DIR/report.json, and prints a summary.",
    )
    report.add_argument("--actions", help="actions file (JSONL)")
    report.add_argument("--outcomes", help="outcomes file (JSONL)")
    report.add_argument("--events", help="events file (JSONL): the clickstream and orders")
    report.add_argument(
        "--from-topics",
        action="store_true",
        help="read actions, outcomes, clickstream and orders from Kafka (TACT_* settings) "
        "instead of files, by time range, without joining any consumer group",
    )
    report.add_argument("--since", help="period start, ISO-8601 with a zone (default: the data)")
    report.add_argument("--until", help="period end, ISO-8601 with a zone (default: the data)")
    report.add_argument("--catalog", help="catalog JSONL: unit costs and subscription products")
    report.add_argument("--policy", help="policy YAML: return handling cost and margin rate")
    report.add_argument(
        "--margin-rate",
        type=float,
        help="margin rate of items not in the catalog (default: the policy's)",
    )
    report.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    report.add_argument("--out", required=True, help="directory for report.html and report.json")
    report.set_defaults(func=cmd_report)

    evaluate = sub.add_parser(
        "evaluate",
        help="off-policy evaluation: what a candidate policy would have earned on the log",
        description="Estimate what CANDIDATE would have earned on the logged decisions, with "
        "IPS, self-normalised IPS and doubly robust estimators, their 95% intervals (bootstrap "
        "over customers), the difference from the logged policy, and the effective sample size. "
        "The candidate replays the events and follows the logged decisions, giving at each the "
        "probability it would have chosen the logged action.",
    )
    evaluate.add_argument("--actions", required=True, help="logged actions (JSONL)")
    evaluate.add_argument("--outcomes", required=True, help="their outcomes (JSONL)")
    evaluate.add_argument(
        "--events",
        required=True,
        help="the events the actions were decided on (JSONL, in the order they were processed)",
    )
    evaluate.add_argument("--policy", help="the candidate policy YAML (default: the built-in)")
    evaluate.add_argument("--catalog", help="catalog JSONL (default: the demo catalog)")
    evaluate.add_argument(
        "--reward",
        choices=("profit", "window_profit"),
        default="profit",
        help="profit: what each action is credited with (default); window_profit: the "
        "customer's whole margin in the window less the action's costs",
    )
    evaluate.add_argument("--seed", type=int, default=0, help="the candidate's seed")
    evaluate.add_argument("--out", help="also write the figures as JSON to this file")
    evaluate.set_defaults(func=cmd_evaluate)

    connector = sub.add_parser("connector", help="deliver Actions to a channel")
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
    connector_run.add_argument("--url", help="webhook: where to POST each Action")
    connector_run.add_argument(
        "--channels", default="email,sms", help="channels to deliver, comma-separated (email,sms)"
    )
    connector_run.add_argument("--host", default="0.0.0.0", help="onsite: the API's address")
    connector_run.add_argument("--port", type=int, default=8088, help="onsite: the API's port")
    connector_run.set_defaults(func=cmd_connector_run)
    export = connector_sub.add_parser(
        "export",
        help="paid-audience: the customers suppressed from paid retargeting now, as CSV",
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
    lag.add_argument("--max-lag", type=int, help="records: exit 1 when a partition lags more")
    lag.add_argument("--max-time-lag", type=float, help="seconds: exit 1 when older than this")
    lag.add_argument("--json", action="store_true", help="print JSON instead of a table")
    lag.set_defaults(func=cmd_lag)

    datasets = sub.add_parser("datasets", help="public datasets as tact events")
    datasets_sub = datasets.add_subparsers(dest="dataset", required=True, metavar="DATASET")
    uci = datasets_sub.add_parser(
        "uci",
        help="UCI Online Retail (CC BY 4.0): orders and cancellations",
        description="Convert the UCI Online Retail CSV (plain or .gz) to order_placed and "
        "order_returned events, and optionally a catalog of its products.",
    )
    rees = datasets_sub.add_parser(
        "rees46",
        help="REES46 multi-category store clickstream (credit REES46; views, carts, purchases)",
        description="Convert a REES46 eCommerce behaviour CSV (plain or .gz) to page views, "
        "cart adds and orders, and optionally a catalog of its products. Credit: REES46 "
        "Marketing Platform (rees46.com); do not redistribute the data.",
    )
    for dataset, default_margin in ((uci, 0.45), (rees, 0.30)):
        dataset.add_argument("--source", required=True, help="the dataset's CSV (.csv or .gz)")
        dataset.add_argument("--events", required=True, help="where to write the events (JSONL)")
        dataset.add_argument("--catalog", help="where to write the inferred catalog (JSONL)")
        dataset.add_argument(
            "--margin",
            type=float,
            default=default_margin,
            help=f"gross margin assumed for unit costs; the data has none ({default_margin})",
        )
        dataset.set_defaults(func=cmd_datasets)

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
    ingest.add_argument("--margin", type=float, help="gross margin assumed for unit costs")
    ingest.add_argument("--rate", type=float, help="events per second at most (default: all)")
    ingest.set_defaults(func=cmd_ingest)

    demo = sub.add_parser(
        "demo", help="start a worker, play a sample stream into Kafka, show the actions live"
    )
    demo.add_argument("--customers", type=int, default=150, help="customers in the stream")
    demo.add_argument("--rate", type=float, default=300.0, help="events per second to play")
    demo.add_argument("--seed", type=int, default=None, help="stream seed (default: the clock)")
    demo.add_argument("--log-dir", default=".run", help="where the worker's log goes")
    demo.add_argument(
        "--exit-when-done",
        action="store_true",
        help="stop after the summary instead of waiting for Ctrl-C",
    )
    demo.set_defaults(func=cmd_demo)

    topics = sub.add_parser("topics", help="Kafka topics tact uses")
    topics_sub = topics.add_subparsers(dest="topics_command", required=True, metavar="ACTION")
    create = topics_sub.add_parser("create", help="create missing topics")
    create.set_defaults(func=cmd_topics_create)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except TactError as exc:
        print(f"tact: {exc}", file=sys.stderr)
        return 2
    except (FileNotFoundError, IsADirectoryError, PermissionError) as exc:
        print(f"tact: {exc.strerror}: {exc.filename}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # the reader went away (e.g. `| head`): stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
