"""The `tact` command."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from app import codec
from app.cli import measure, operations
from app.cli.options import TIME_FORMS, at_least, id_prefix, margin_rate, positive
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
    from app.settings import load_settings

    run_worker(load_settings())
    return 0


def cmd_learner(args: argparse.Namespace) -> int:
    import logging.config

    from app.io import clients
    from app.io.learner import run_learner
    from app.io.migrate import check_layout
    from app.io.worker import build_engine
    from app.logs import logging_config
    from app.settings import load_settings

    settings = load_settings()
    logging.config.dictConfig(logging_config(settings.log_level, settings.log_format))
    clients.check_redis(settings)
    client = clients.redis_client(settings, socket_timeout=10, socket_connect_timeout=5)
    check_layout(client, settings.redis_prefix)
    return run_learner(settings, build_engine(settings), client)


def cmd_state_migrate(args: argparse.Namespace) -> int:
    from app.io import clients
    from app.io.kafka_admin import input_partitions
    from app.io.migrate import run_migrate
    from app.settings import load_settings

    settings = load_settings()
    clients.check_redis(settings)
    partitions = args.partitions or next(iter(input_partitions(settings).values()))
    client = clients.redis_client(settings, socket_timeout=30, socket_connect_timeout=5)
    print(run_migrate(client, settings.redis_prefix, partitions))
    return 0


def cmd_topics_read(args: argparse.Namespace) -> int:
    from app.cli.report import parse_time
    from app.io.topic_reader import read_records
    from app.settings import load_settings

    settings = load_settings()
    topic = settings.topics.get(args.topic.replace("-", "_"), args.topic)
    since, until = parse_time(args.since), parse_time(args.until)
    records = sorted(
        read_records(
            settings,
            topic,
            None if since is None else int(since * 1000),
            None if until is None else int(until * 1000),
        ),
        key=lambda r: (r.timestamp_ms, r.partition, r.offset),
    )
    out = sys.stdout.buffer
    for record in records[-args.last :] if args.last else records:
        out.write(record.value.rstrip(b"\n") + b"\n")
    sys.stderr.write(f"{topic}: {len(records):,} records in the range\n")
    return 0


def cmd_topics_create(args: argparse.Namespace) -> int:
    from app.io.kafka_admin import ensure_topics, input_partitions
    from app.settings import load_settings

    settings = load_settings()
    created = ensure_topics(settings)
    print(f"created: {', '.join(created)}" if created else "all topics exist")
    input_partitions(settings)  # a worker would refuse inputs that are not co-partitioned
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from app.cli.demo import Demo
    from app.cli.demo_loop import SHOPPERS
    from app.settings import load_settings
    from app.simulate.world import load_world

    if args.world is not None:
        load_world(args.world)  # an unknown world is refused before anything starts
    demo = Demo(
        load_settings(),
        customers=args.customers or (SHOPPERS if args.world else 150),
        rate=args.rate,
        seed=args.seed,
        log_dir=Path(args.log_dir),
        colour=sys.stdout.isatty(),
        keep=args.keep,
        world=args.world,
        days=args.days,
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
    if args.since or args.until:
        raise ConfigurationError(
            "--since and --until go with --from-topics (a file is replayed whole: cut it first)"
        )

    return run_replay(args)


def cmd_sample(args: argparse.Namespace) -> int:
    from datetime import UTC, datetime, timedelta

    from app.cli.sample import run_sample, sample_start

    start = sample_start(args.start, datetime.now(UTC))
    arrivals = timedelta(minutes=args.arrivals)
    return run_sample(
        args.customers, args.seed, args.events, args.catalog, start, arrivals, args.prefix
    )


def cmd_policy_validate(args: argparse.Namespace) -> int:
    from app.cli.policy import run_validate

    return run_validate(args.file)


def cmd_policy_matrix(args: argparse.Namespace) -> int:
    from app.cli.policy import run_matrix

    return run_matrix(args.policy, args.html)


def cmd_policy_explain(args: argparse.Namespace) -> int:
    from app.cli.policy import run_explain

    return run_explain(
        args.customer_id, args.events, args.catalog, args.policy, args.seed, args.top
    )


def cmd_datasets(args: argparse.Namespace) -> int:
    from app.cli.datasets import run_dataset

    return run_dataset(args.dataset, args.source, args.events, args.catalog, args.margin)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tact",
        description="Event-streaming decision engine for e-commerce upsells and cross-sells.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    worker = sub.add_parser(
        "worker",
        help="run the Faust worker (settings from TACT_* env)",
        description="Consume clickstream and orders, decide, and send Actions and Outcomes; "
        "customer state, offsets and models are checkpointed to Redis. Checks Redis and creates "
        "missing topics first; runs until SIGTERM or Ctrl-C. Every setting is a TACT_* "
        "variable (README: Configuration).",
    )
    worker.set_defaults(func=cmd_worker)

    learner = sub.add_parser(
        "learner",
        help="the one process that learns, for workers run with TACT_LEARNER=true",
        description="Fold what every worker learns (written to Redis with each of their "
        "checkpoints) into one set of models and publish them for the workers, every "
        "learning.snapshot_changes changes or learning.snapshot_seconds of the policy. One "
        "learner learns at a time (a second one waits for its lease); runs until SIGTERM or "
        "Ctrl-C. Uses the workers' TACT_REDIS_URL, TACT_APP_ID, TACT_POLICY and TACT_CATALOG.",
    )
    learner.set_defaults(func=cmd_learner)

    state = sub.add_parser(
        "state",
        help="the workers' state in Redis",
        description="What the workers keep in Redis: customer states, offsets, models.",
    ).add_subparsers(dest="state_command", required=True)
    migrate = state.add_parser(
        "migrate",
        help="move state saved by tact before 2026-12 to the current key layout",
        description="Move this app id's state (customers, offsets, clocks, epochs, due "
        "windows, models and journal entries not yet learned) from the key layout of tact "
        "before 2026-12 to the current one, in which each input partition's keys share one "
        "hash slot (as Redis Cluster needs). Stop every worker and the learner first. Safe to "
        "run again if interrupted. Uses TACT_REDIS_URL and TACT_APP_ID.",
    )
    migrate.add_argument(
        "--partitions",
        type=at_least(1),
        help="the input topics' partition count (default: asked of Kafka); a customer's "
        "state goes to the partition Kafka's default partitioner gives their id",
    )
    migrate.set_defaults(func=cmd_state_migrate)

    schemas = sub.add_parser(
        "schemas",
        help="JSON Schema files of the event contract",
        description="The JSON Schema files of events, Actions and Outcomes, written from the "
        "pydantic models (README: Events, Actions, Outcomes).",
    )
    schemas_sub = schemas.add_subparsers(dest="schemas_command", required=True, metavar="ACTION")
    export = schemas_sub.add_parser(
        "export",
        help="write schemas/json/*.json",
        description="Write one JSON Schema file per event type, Action and Outcome from the "
        "pydantic models (the contract connectors and producers code against); with --check, "
        "write nothing and exit 1 when the files in the package differ from the models.",
    )
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
    replay.add_argument(
        "--dead-letter", help="dead-letter file (default for --out a.jsonl: a.dead-letters.jsonl)"
    )
    replay.add_argument(
        "--outcomes",
        help="outcomes file, one per action as its window closes; windows still open at the "
        "end are written as censored (default for --out a.jsonl: a.outcomes.jsonl)",
    )
    replay.add_argument(
        "--strict", action="store_true", help="exit with status 1 when any line was a dead letter"
    )
    replay.add_argument(
        "--learner",
        action="store_true",
        help="decide as workers with TACT_LEARNER=true and `tact learner` do: what is learned "
        "reaches the models when the learner would publish it (the policy's "
        "learning.snapshot_changes changes or snapshot_seconds of event time), not at once",
    )
    backtest = replay.add_argument_group(
        "backtests from the topics",
        "Read clickstream and orders from Kafka by record time (TACT_* settings; offsets for "
        "times per partition, never joining a consumer group) and replay them as a file would "
        "be, in record-time order.",
    )
    backtest.add_argument("--from-topics", action="store_true", help="read the input topics")
    backtest.add_argument("--since", help=f"range start, {TIME_FORMS} (default: all)")
    backtest.add_argument("--until", help="range end, the same way (default: all)")
    backtest.add_argument("--report", help="also write the report of the replay to this directory")
    backtest.add_argument(
        "--evaluate",
        action="store_true",
        help="also estimate what --policy would have earned on the actions the live worker "
        "logged in the range (topics actions and outcomes): off-policy evaluation",
    )
    replay.set_defaults(func=cmd_replay)

    policy = sub.add_parser(
        "policy",
        help="check a policy file, or explain its decisions",
        description="Validate a policy YAML file (each error names its field), or explain, "
        "moment by moment, why a customer got what they got (README: Writing a policy).",
    )
    policy_sub = policy.add_subparsers(dest="policy_command", required=True, metavar="ACTION")
    validate = policy_sub.add_parser(
        "validate",
        help="check a policy YAML file",
        description="Load a policy file as the worker would and name the field of every "
        "mistake (exit 2), or print its version and what it sets (exit 0).",
    )
    validate.add_argument("file", help="the policy YAML (start from app/policies/default.yaml)")
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
    matrix = policy_sub.add_parser(
        "matrix",
        help="who may get what offer, where and how hard, and what is kept quiet",
        description="The cross-sell policy matrix: every segment (new or returning, return "
        "risk, value, ready, discount-trained, the offer's margin) run through the policy's "
        "rules at every moment; segments treated alike are one row, with the plays and "
        "intensities allowed, the channels open and closed (and the rule that closed them), "
        "frames and offers denied or preferred; then what holds for everyone (holdout, "
        "consent, quiet hours, caps, suppressions).",
    )
    matrix.add_argument("--policy", help="policy YAML file (default: the built-in policy)")
    matrix.add_argument("--html", help="also write the matrix as an HTML page to this file")
    matrix.set_defaults(func=cmd_policy_matrix)

    sample = sub.add_parser(
        "sample",
        help="write a generated event stream and the demo catalog",
        description="Generate a stream of events of simulated shoppers (views, carts, orders, "
        "returns, consent) on the demo catalog: input for `tact replay` or `tact produce`.",
    )
    sample.add_argument("--customers", type=at_least(1), default=1000, help="(default 1000)")
    sample.add_argument("--seed", type=int, default=0)
    sample.add_argument("--events", required=True, help="where to write the events (JSONL)")
    sample.add_argument("--catalog", help="where to write the demo catalog (JSONL)")
    sample.add_argument(
        "--start",
        metavar="TIME",
        help="when the first customer arrives: now, or ISO-8601 with a zone (default "
        "2025-11-03T08:00Z). A worker treats events older than the policy's "
        "freshness.max_lag_seconds (5 min) as stale, so to see Actions delivered, produce "
        "a sample dated now: --start now --arrivals 2",
    )
    sample.add_argument(
        "--arrivals",
        type=positive,
        default=480.0,
        metavar="MINUTES",
        help="customers arrive over this many minutes from --start (default 480); each "
        "visits for minutes, and repeat buyers and returners come back days later",
    )
    sample.add_argument(
        "--prefix",
        type=id_prefix,
        default="c",
        help="customer ids start with it (default c: c000000, ...); event ids follow. Another "
        "prefix keeps a second sample's customers and events apart from the first's",
    )
    sample.set_defaults(func=cmd_sample)

    measure.add_commands(sub)
    operations.add_commands(sub)

    datasets = sub.add_parser(
        "datasets",
        help="public datasets as tact events",
        description="Convert a public dataset to a file of tact events and a catalog, for "
        "`tact replay` (`tact ingest` produces the same events into Kafka).",
    )
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
            type=margin_rate,
            default=default_margin,
            help=f"gross margin assumed for unit costs; the data has none ({default_margin})",
        )
        dataset.set_defaults(func=cmd_datasets)

    demo = sub.add_parser(
        "demo",
        help="start a worker and show its actions live: simulated shoppers answering them "
        "(--world), or a sample stream",
        description="Start `tact worker` and show each Action as it arrives, then a summary. "
        "With --world (what `make demo` runs): a closed loop in which a simulated world's "
        "shoppers answer the worker's offers through Kafka, with what tact adds against never "
        "upselling the same shoppers. Without: a generated stream (and a few bad records) "
        "into the input topics at --rate. "
        "Each run has its own app id, topics and temporary directory of files (removed at the "
        "end unless --keep), so it never touches the configured ones, one run never teaches "
        "the next, and only the worker's log (in --log-dir) is left. "
        "Needs Kafka and Redis (`make demo` starts them).",
    )
    demo.add_argument(
        "--customers",
        type=at_least(10),
        default=None,
        help="customers in the stream (150), or shoppers in the --world (300)",
    )
    demo.add_argument("--rate", type=positive, default=300.0, help="events per second to play")
    demo.add_argument("--seed", type=int, default=None, help="stream seed (default: the clock)")
    demo.add_argument(
        "--log-dir", default=".run", help="where the worker's log goes (.run, from here)"
    )
    demo.add_argument(
        "--exit-when-done",
        action="store_true",
        help="stop after the summary instead of waiting for Ctrl-C",
    )
    demo.add_argument(
        "--world",
        nargs="?",
        const="default",
        default=None,
        help="a closed loop instead of a sample stream: the shoppers of this simulated world "
        "(default: 'default'; `tact simulate --help` lists them) answer the worker's offers "
        "live through Kafka, and you see what tact adds against never upselling them, and "
        "against the same engine not learning",
    )
    demo.add_argument(
        "--days", type=positive, default=20.0, help="simulated days of the --world (20)"
    )
    demo.add_argument(
        "--keep",
        action="store_true",
        help="keep this run's topics and Redis state at the end (removed by default)",
    )
    demo.set_defaults(func=cmd_demo)

    topics = sub.add_parser(
        "topics",
        help="Kafka topics tact uses",
        description="Create the topics tact uses that are missing (names, partitions, "
        "replication and min.insync.replicas from TACT_* settings), and check that the input "
        "topics are co-partitioned.",
    )
    topics_sub = topics.add_subparsers(dest="topics_command", required=True, metavar="ACTION")
    create = topics_sub.add_parser(
        "create",
        help="create missing topics",
        description="Create the topics tact uses that do not exist yet (names, partitions, "
        "replication and min.insync.replicas from TACT_* settings; existing topics are left "
        "as they are), then check that the input topics are co-partitioned.",
    )
    create.set_defaults(func=cmd_topics_create)
    read = topics_sub.add_parser(
        "read",
        help="print a topic's records",
        description="Print the values of a topic's records, one per line in record-time order "
        "(actions, outcomes, dead_letters, connector_dead_letters, clickstream, orders: this "
        "app's topics by TACT_TOPIC_* settings; any other name is a topic's own), read from the "
        "beginning without joining a consumer group; how many there were goes to stderr. "
        "E.g. `tact topics read actions --last 5`.",
    )
    read.add_argument("topic", help="actions, outcomes, dead_letters, clickstream, orders, or any")
    read.add_argument("--since", help=f"range start by record time, {TIME_FORMS}")
    read.add_argument("--until", help="range end, the same way")
    read.add_argument("--last", type=at_least(1), help="only the last N records of the range")
    read.set_defaults(func=cmd_topics_read)
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
