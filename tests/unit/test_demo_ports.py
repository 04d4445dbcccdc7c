"""`tact demo` beside a worker of yours: its worker takes a free status port, not yours."""

from __future__ import annotations

import socket

from app.cli.demo import free_port


def test_the_demo_worker_takes_another_port_when_the_configured_one_is_held() -> None:
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        other = free_port("127.0.0.1", port)
        assert other not in (port, 0)
        with socket.socket() as probe:  # ... and it is free indeed
            probe.bind(("127.0.0.1", other))
    assert free_port("127.0.0.1", port) == port  # once released, the configured one
