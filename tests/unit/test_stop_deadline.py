"""The worker's stop deadline: a process asked to stop is gone within TACT_STOP_TIMEOUT_S."""

from __future__ import annotations

import threading

from app.io.worker import EXIT_STOP_TIMEOUT, StopDeadline


def test_the_deadline_dumps_the_tasks_then_exits_once() -> None:
    exited = threading.Event()
    calls: list[object] = []

    def exit_(code: int) -> None:
        calls.append(code)
        exited.set()

    deadline = StopDeadline(0.05, dump=lambda: calls.append("dump"), exit_=exit_, grace_s=0)
    deadline.start("SIGTERM")
    deadline.start("SIGINT")  # a second signal does not start a second clock
    assert exited.wait(5.0)
    threading.Event().wait(0.3)  # time for a second clock to run out, had one started
    assert calls == ["dump", EXIT_STOP_TIMEOUT]


def test_no_deadline_runs_until_a_stop_is_asked() -> None:
    calls: list[int] = []
    StopDeadline(0.01, exit_=calls.append)
    threading.Event().wait(0.1)
    assert calls == []
