"""Prometheus metrics of the worker, served on TACT_METRICS_PORT at /metrics."""

from __future__ import annotations

from prometheus_client import Counter, Histogram, disable_created_metrics, start_http_server

disable_created_metrics()  # type: ignore[no-untyped-call]

EVENTS = Counter("tact_events_total", "Valid events processed, by type", ["type"])
DEAD_LETTERS = Counter(
    "tact_dead_letters_total", "Records sent to the dead-letter topic, by reason", ["reason"]
)
ACTIONS = Counter(
    "tact_actions_total", "Actions produced, by play and channel", ["play", "channel"]
)
OUTCOMES = Counter(
    "tact_outcomes_total", "Outcome records sent (one per Action), by status", ["status"]
)
STALE = Counter(
    "tact_stale_events_total",
    "Events that waited in Kafka past the policy's freshness limit (no onsite or urgency offers)",
)
DUE_LOADED = Counter(
    "tact_due_customers_loaded_total",
    "Customers not in memory loaded to close attribution windows that had ended",
)
SUPPRESSIONS = Counter(
    "tact_suppressions_total", "Channel suppressions issued, by channel", ["channel"]
)
REDELIVERED = Counter(
    "tact_redelivered_skipped_total",
    "Records below the state checkpoint (already applied), skipped after a restart",
)
DUPLICATES = Counter(
    "tact_duplicate_events_total", "Events skipped because their event_id came again recently"
)
BATCH_SECONDS = Histogram(
    "tact_batch_seconds",
    "Time to decide, send and checkpoint one batch",
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
BATCH_SIZE = Histogram(
    "tact_batch_records", "Records per batch", buckets=(1, 10, 50, 100, 250, 500, 1000, 5000)
)


def serve(port: int, host: str = "0.0.0.0") -> None:
    """Start the /metrics endpoint in a background thread (port 0 disables it)."""
    if port:
        start_http_server(port, addr=host)
