"""A small receiver for the webhook connector, to try it end to end (`tact connector receive`):
each POST's signature is checked with the shared secret, a repeat of an `Idempotency-Key` is
answered but not shown again, and every Action received is handed to `show` as one line.

For trying tact, not for production: one process, the keys seen kept in memory.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from app import codec
from app.connectors.webhook import verify


def line(action: dict[str, Any]) -> str:
    """One Action as a person reads it: channel, who, what and how, and its id."""
    offer = f"{action.get('offer_sku')} ({action.get('frame')}, {action.get('intensity')})"
    return (
        f"{action.get('channel', '?'):<8} {action.get('customer_id', '?'):<16} "
        f"{action.get('play', '?'):<8} {offer:<44} action {action.get('action_id', '?')}"
    )


class Receiver:
    """An HTTP server on `host:port` (0: a free port) taking the webhook's POSTs on any path."""

    def __init__(
        self, secret: str | bytes, show: Callable[[str], None], host: str, port: int
    ) -> None:
        self.secret = secret
        self.show = show
        self.channels: Counter[str] = Counter()  # Actions received, by channel
        self.refused = 0  # requests whose signature did not match
        self.seen: set[str] = set()
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer((host, port), self._handler())

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def take(self, headers: Any, body: bytes) -> int:
        """The answer to one POST: 204 taken (or a repeat), 401 a bad signature, 400 no JSON."""
        ok = verify(
            self.secret,
            headers.get("X-Tact-Timestamp", ""),
            body,
            headers.get("X-Tact-Signature", ""),
        )
        if not ok:
            with self.lock:
                self.refused += 1
            self.show(
                "refused a request: its signature does not match (is TACT_WEBHOOK_SECRET the "
                "connector's?) or it is more than 5 minutes old"
            )
            return 401
        try:
            action = codec.loads(body)
        except ValueError:
            return 400
        if not isinstance(action, dict):
            return 400
        key = headers.get("Idempotency-Key") or str(action.get("action_id"))
        with self.lock:
            if key in self.seen:
                return 204  # delivered already: the connector retried one in flight
            self.seen.add(key)
            self.channels[str(action.get("channel"))] += 1
        self.show(line(action))
        return 204

    def summary(self) -> str:
        by = ", ".join(f"{k} {v:,}" for k, v in self.channels.most_common()) or "none"
        return f"received {sum(self.channels.values()):,} Actions ({by}); refused {self.refused}"

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                size = int(self.headers.get("Content-Length") or 0)
                code = receiver.take(self.headers, self.rfile.read(size))
                self.send_response(code)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                return None

        return Handler
