"""The measurement commands: `tact simulate`, `tact report`, `tact evaluate`."""

from __future__ import annotations

import argparse
from typing import Any

from app.cli.options import TIME_FORMS


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


def add_commands(sub: Any) -> None:
    """Register the measurement commands on the `tact` subparsers."""
    simulate = sub.add_parser(
        "simulate",
        help="the engine against baselines on a simulated population, in a closed loop",
        description="Simulate a population of shoppers whose responses follow a ground truth "
        "(a built-in world, or --world FILE), and run the engine, the ceiling (a policy that "
        "knows the world's truth), the traits and average-shopper references and the baselines "
        "on it in a closed loop: events -> actions -> responses -> outcomes. Every policy meets "
        "the same shoppers with the same random draws. Prints the profit each really earned, the "
        "incremental profit over never upselling, and each one's share of the ceiling's.",
    )
    simulate.add_argument("--customers", type=int, help="shoppers (default: the world's)")
    simulate.add_argument("--days", type=float, help="horizon in days (default: the world's)")
    simulate.add_argument("--seed", type=int, default=0, help="seed of shoppers and draws")
    simulate.add_argument(
        "--world",
        default="default",
        help="a built-in world (default, sparse, distraction, refills, apparel, discounts, "
        "shift, cameras) or a YAML file of app/simulate/world.py keys",
    )
    simulate.add_argument("--policy", help="the engine's policy YAML (default: the built-in)")
    simulate.add_argument("--catalog", help="catalog JSONL (default: the world's, else the demo's)")
    simulate.add_argument("--out", help="write the engine's events, actions and outcomes here")
    simulate.add_argument(
        "--policies",
        default="all",
        help="which to run, comma-separated: tact, ceiling, traits, average, never, always, "
        "widget, rules, random (default: all)",
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
    report.add_argument("--since", help=f"period start, {TIME_FORMS} (default: the data)")
    report.add_argument("--until", help="period end, the same way (default: the data)")
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
        description="Estimate what the candidate policy (--policy) would have earned on the "
        "logged decisions, with "
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
