"""Log lines: the Kafka clients' repeats are held back, tact's own lines never are."""

from __future__ import annotations

import logging

from app.logs import Repeats


def record(name: str, msg: str, at: float, *args: object) -> logging.LogRecord:
    r = logging.LogRecord(name, logging.ERROR, __file__, 1, msg, args, None)
    r.created = at
    return r


def test_a_flood_of_one_client_message_becomes_one_line_per_interval() -> None:
    f = Repeats(every_s=30.0)
    shown = [
        f.filter(record("aiokafka.conn", "Unable connect to node with id %s", i / 1000, 1))
        for i in range(11_000)  # 11,000 in 11 s
    ]
    assert shown.count(True) == 1
    later = record("aiokafka.conn", "Unable connect to node with id %s", 31.0, 1)
    assert f.filter(later)
    assert later.held_back == 10_999  # type: ignore[attr-defined]
    assert later.getMessage() == "Unable connect to node with id 1 [10999 more like this held back]"
    # Another message of the same client is its own line.
    assert f.filter(record("aiokafka.conn", "Unable to update metadata", 31.5))


def test_tacts_own_lines_are_never_held_back() -> None:
    f = Repeats(every_s=30.0)
    assert all(
        f.filter(record("agents.worker", "dead letter: %s", 0.001 * i, "x")) for i in range(50)
    )


def test_the_coordinator_election_at_start_is_no_error() -> None:
    from aiokafka.errors import GroupAuthorizationFailedError, GroupCoordinatorNotAvailableError

    from app.logs import StartUp

    f = StartUp(grace_s=60.0)
    name, msg = "aiokafka.consumer.group_coordinator", "Group Coordinator Request failed: %s"
    now = f.until - 60.0
    assert not f.filter(record(name, msg, now + 1, GroupCoordinatorNotAvailableError()))
    late = record(name, msg, now + 120, GroupCoordinatorNotAvailableError())
    assert f.filter(late) and late.levelname == "WARNING"  # still missing a minute later
    fatal = record(name, msg, now + 1, GroupAuthorizationFailedError())  # not retried
    assert f.filter(fatal) and fatal.levelname == "ERROR"
    assert f.filter(record("aiokafka.conn", "Unable connect to node", now + 1))


def test_faust_s_fetch_alarm_after_a_rebalance_is_a_warning_that_says_why() -> None:
    from app.logs import Rebalanced

    f = Rebalanced()
    name = "faust.transport.drivers.aiokafka"
    # as mode's logger hands it over: the service's beacon first, Faust's text after
    msg = "[^---AIOKafkaConsumerThread]: \nAiokafka has not sent fetch request for %r since start"
    alarm = record(name, msg, 1.0, "TP(topic='orders', partition=0)")
    assert f.filter(alarm) and alarm.levelname == "WARNING" and "false alarm" in alarm.note
    other = record(name, "Consumer error", 1.0)
    assert f.filter(other) and other.levelname == "ERROR"
