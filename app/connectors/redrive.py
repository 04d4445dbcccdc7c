"""`tact connector redrive NAME`: a connector's dead letters back into its waiting set.

Dead letters keep the Action as it was and name their connector in the `tact.dlq.connector`
header. Each one of NAME goes back into NAME's waiting set in Redis (the sorted set of the
`actions` partition its customer keys to, as the connector itself parks Actions), due now;
the running connector, or the next one started, delivers them. Running it twice is harmless:
the waiting set holds an Action once, and one delivered since is skipped by its mark.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from app import codec
from app.connectors.sdk import Runner
from app.io import clients
from app.io.kafka_admin import admin_client
from app.io.topic_reader import read_records
from app.partitioning import partition_of
from app.settings import Settings


@dataclass(slots=True)
class Redriven:
    again: int = 0
    expired: int = 0
    others: Counter[str] = field(default_factory=Counter)  # other connectors' dead letters
    unreadable: int = 0

    def line(self, name: str) -> str:
        others = ", ".join(f"{n:,} of {who}" for who, n in self.others.most_common())
        return (
            f"{self.again:,} dead letters of connector {name} are waiting to be delivered again"
            f"; {self.expired:,} expired already (left out)"
            + (f"; {self.unreadable:,} were not Actions" if self.unreadable else "")
            + (f"; skipped those of other connectors ({others})" if others else "")
            + (f". A running `tact connector run ... {name}` delivers them." if self.again else ".")
        )


class _Named:
    """The connector as the waiting set knows it: by name."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.channels: frozenset[str] = frozenset()

    def deliver(self, action: dict[str, object]) -> None:  # never called here
        raise NotImplementedError


def redrive(settings: Settings, name: str, since_ms: int | None = None) -> Redriven:
    clients.check_redis(settings)
    store = clients.redis_client(settings)
    admin = admin_client(settings)
    try:
        described = admin.describe_topics([settings.topic_actions])
    finally:
        admin.close()
    partitions = len(described[0]["partitions"]) if described else 1
    runner = Runner(_Named(name), store, lambda *_: None, prefix=f"tact:{settings.app_id}")
    done = Redriven()
    for record in read_records(settings, settings.topic_connector_dead_letters, since_ms, None):
        headers = dict(record.headers)
        owner = headers.get("tact.dlq.connector", b"?").decode(errors="replace")
        if owner != name:
            done.others[owner] += 1
            continue
        try:
            customer = str(codec.loads(record.value)["customer_id"])
            again = runner.redrive(record.value, partition_of(customer, partitions))
        except (codec.JSONDecodeError, KeyError, TypeError, ValueError):
            done.unreadable += 1
            continue
        if again:
            done.again += 1
        else:
            done.expired += 1
    return done
