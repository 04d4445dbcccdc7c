"""Prometheus metrics of the worker, served on TACT_METRICS_PORT at /metrics (and a status page
at /, app/io/status.py)."""

from __future__ import annotations

from prometheus_client import REGISTRY, Counter, Gauge, Histogram, disable_created_metrics

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
ALIGN_TIMEOUTS = Counter(
    "tact_align_timeouts_total",
    "Times a partition's topic behind in Kafka held the other back TACT_ALIGN_WAIT_S and the "
    "other went on alone (out of event-time order across the two topics meanwhile)",
)
SUPPRESSIONS = Counter(
    "tact_suppressions_total", "Channel suppressions issued, by channel", ["channel"]
)
REDELIVERED = Counter(
    "tact_redelivered_skipped_total",
    "Records below the state checkpoint (already applied), skipped after a restart",
)
BATCH_RETRIES = Counter(
    "tact_batch_retries_total",
    "Batches that failed (a send, Redis) and were handled again from the checkpoint",
)
FENCED = Counter(
    "tact_fenced_batches_total",
    "Batches whose checkpoint was refused because another worker had claimed the partitions "
    "(this worker was a zombie); dropped unacknowledged",
)
REBALANCED = Counter(
    "tact_rebalanced_batches_total",
    "Batches neither checkpointed nor acknowledged because of a rebalance (their records come "
    "again to whoever owns the partitions now), by reason: revoked (they came between a "
    "revocation, or a refused checkpoint, and the next assignment), claim (a rebalance came "
    "while the partitions were claimed), moved (records of partitions now owned elsewhere), "
    "overtaken (a rebalance came while the batch was handled; what it sent goes out again)",
    ["reason"],
)
DUPLICATES = Counter(
    "tact_duplicate_events_total", "Events skipped because their event_id came again recently"
)
UNKNOWN_SKUS = Counter(
    "tact_unknown_sku_events_total",
    "Events naming a SKU the catalog lacks (nothing is offered around it: check TACT_CATALOG)",
)
BATCH_SECONDS = Histogram(
    "tact_batch_seconds",
    "Time to decide, send and checkpoint one batch",
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
BATCH_SIZE = Histogram(
    "tact_batch_records", "Records per batch", buckets=(1, 10, 50, 100, 250, 500, 1000, 5000)
)
DECISION_SECONDS = Histogram(
    "tact_decision_seconds",
    "Time the engine took for one event (readiness, arms, the draw, the Actions)",
    buckets=(0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05),
)
CACHED = Gauge(
    "tact_cached_customers",
    "Customers in the worker's memory: as states (hot), or as compressed bytes until their "
    "next event (cold; TACT_HOT_CUSTOMERS)",
    ["tier"],
)
LAG_RECORDS = Gauge(
    "tact_consumer_lag_records",
    "Records not yet processed by the worker's group, per input partition (as `tact lag`)",
    ["topic", "partition"],
)
LAG_SECONDS = Gauge(
    "tact_consumer_lag_seconds",
    "Age of the oldest record not yet processed, per input partition (as `tact lag`)",
    ["topic", "partition"],
)


def total(name: str) -> float:
    """The sum over labels of a metric's samples named `name`."""
    return sum(
        sample.value
        for family in REGISTRY.collect()
        for sample in family.samples
        if sample.name == name
    )


def processed() -> str:
    """What this process has done, in words (the worker's last log line)."""
    return (
        f"{total('tact_events_total'):,.0f} events, {total('tact_actions_total'):,.0f} actions, "
        f"{total('tact_dead_letters_total'):,.0f} dead letters"
    )
