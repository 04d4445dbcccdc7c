"""The project's exception tree: one root, a few categories.

Pure code raises these; only the edges (agents, CLI, connectors) catch them. Bad input never
crashes a stream: the edge turns it into a dead letter with the reason code carried here.
"""

from __future__ import annotations


class TactError(Exception):
    """Root of every error tact raises on purpose."""


class BadInput(TactError):
    """A record or file line tact cannot use. `reason` is a short code for dead letters."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class DependencyUnavailable(TactError):
    """Kafka, Redis or another service tact needs cannot be reached."""


class ConfigurationError(TactError):
    """Settings, a policy or a catalog file is wrong; the message says what and where."""
