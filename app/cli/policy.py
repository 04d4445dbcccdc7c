"""`tact policy validate` and `tact policy explain`."""

from __future__ import annotations

import sys
from pathlib import Path

from app.decisions import Decision
from app.decode import decode_event
from app.engine import DecisionEngine
from app.errors import BadInput
from app.explain import explain
from app.policy import load_policy


def run_validate(path: str) -> int:
    policy = load_policy(path)
    print(
        f"{path}: valid policy {policy.version} ({len(policy.rules)} rules: "
        f"{', '.join(r.name for r in policy.rules) or 'none'}; "
        f"moments: {', '.join(policy.moments)}; holdout {policy.holdout.share:.0%})"
    )
    return 0


def run_matrix(policy_path: str | None, html_path: str | None) -> int:
    from app.policy_matrix import html, text

    policy = load_policy(policy_path)
    print(text(policy))
    if html_path:
        Path(html_path).write_text(html(policy), encoding="utf-8")
        print(f"\nwritten: {html_path}", file=sys.stderr)
    return 0


def run_explain(
    customer_id: str, events: str, catalog: str, policy: str | None, seed: int, top: int
) -> int:
    engine = DecisionEngine.from_files(catalog, policy, seed)
    mine: list[Decision] = []
    engine.on_decision = lambda d: mine.append(d) if d.customer_id == customer_id else None
    seen = bad = 0
    others: dict[str, None] = {}  # the first customers of the file, for a hint
    with Path(events).open("rb") as lines:
        for line in lines:
            if not line.strip():
                continue
            try:
                event = decode_event(line.rstrip(b"\r\n"), None)
            except BadInput:
                bad += 1
                continue
            seen += event.customer_id == customer_id
            if len(others) < 5:
                others[event.customer_id] = None
            engine.process_event(event)
    if not seen:
        hint = f" (customers in it: {', '.join(others)}, ...)" if others else " (no valid events)"
        print(f"customer {customer_id!r} has no events in {events}{hint}", file=sys.stderr)
        return 1
    print(
        f"customer {customer_id}: {seen} events, {len(mine)} decision moments "
        f"(policy {engine.policy.version}, models {engine.models.version})"
        + (f"; {bad} unreadable lines skipped" if bad else "")
    )
    for decision in mine:
        print()
        print("\n".join(explain(decision, top, engine.policy.min_expected_profit)))
    return 0
