"""The worker's HTTP endpoint on TACT_METRICS_PORT: Prometheus metrics at /metrics, and at / a
small status page (lag per partition, throughput, what was decided) for a person to look at.

The consumer lag shown here and exported as gauges comes from a background thread that reads
the group's committed and end offsets every `interval_s` seconds with the same code as
`tact lag` (app/io/lag.py), so the page, the metrics and the command agree.
"""

from __future__ import annotations

import errno
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from html import escape
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import REGISTRY, make_wsgi_app

from app.errors import ConfigurationError
from app.io import metrics
from app.io.lag import PartitionLag, group_lag
from app.settings import Settings

log = logging.getLogger(__name__)

StartResponse = Callable[[str, list[tuple[str, str]]], Any]


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        return None


def _by_label(name: str, label: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for family in REGISTRY.collect():
        for sample in family.samples:
            if sample.name == name:
                key = sample.labels.get(label, "")
                out[key] = out.get(key, 0.0) + sample.value
    return out


class Status:
    """Lag polling and the WSGI app serving /metrics and the status page."""

    def __init__(
        self, settings: Settings, about: Callable[[], dict[str, str]] | None = None
    ) -> None:
        """The worker's group (TACT_APP_ID) and input topics, read every TACT_LAG_INTERVAL_S."""
        self.settings = settings
        self.group = settings.app_id
        self.topics = set(settings.input_topics)
        self.interval_s = settings.lag_interval_s
        self.about = about  # what the worker runs: versions of tact, policy, catalog, models
        self.started = time.time()
        self.lag: list[PartitionLag] = []
        self.lag_at = 0.0
        self.lag_error = ""
        self._events: deque[tuple[float, float]] = deque(maxlen=120)  # (time, events so far)
        self._events_lock = threading.Lock()  # the lag thread and page requests both add
        self._metrics_app = make_wsgi_app()
        self._stop = threading.Event()

    def poll_lag(self) -> None:
        """Read the group's lag once and export it."""
        try:
            rows = [r for r in group_lag(self.settings, [self.group]) if r.topic in self.topics]
        except Exception as exc:  # the group may not exist yet; keep serving
            self.lag_error = str(exc)
            return
        self.lag, self.lag_at, self.lag_error = rows, time.time(), ""
        for r in rows:
            metrics.LAG_RECORDS.labels(r.topic, str(r.partition)).set(r.lag or 0)
            metrics.LAG_SECONDS.labels(r.topic, str(r.partition)).set(r.time_lag_s or 0.0)

    def _run(self) -> None:
        while True:
            self.poll_lag()
            with self._events_lock:
                self._events.append((time.time(), metrics.total("tact_events_total")))
            if self._stop.wait(self.interval_s):
                return

    def events_per_second(self, now: float | None = None, window_s: float = 30.0) -> float:
        """Events per second over about the last `window_s`: 0 once events stop coming."""
        now = time.time() if now is None else now
        with self._events_lock:
            if not self._events or now - self._events[-1][0] >= 1.0:  # page hits: 1 a second
                self._events.append((now, metrics.total("tact_events_total")))
            points = list(self._events)
        t1, n1 = now, metrics.total("tact_events_total")
        earlier = [(t, n) for t, n in points if t <= t1 - window_s]
        t0, n0 = earlier[-1] if earlier else points[0]
        return (n1 - n0) / (t1 - t0) if t1 > t0 else 0.0

    def app(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("PATH_INFO", "/") == "/metrics":
            body: Iterable[bytes] = self._metrics_app(environ, start_response)
            return body
        page = self.page().encode("utf-8")
        start_response("200 OK", [("Content-Type", "text/html; charset=utf-8")])
        return [page]

    def page(self) -> str:
        rows = "".join(
            f"<tr><td>{escape(r.topic)}</td><td>{r.partition}</td><td>{r.committed}</td>"
            f"<td>{r.end}</td><td>{r.lag}</td><td>{(r.time_lag_s or 0):.1f} s</td>"
            f"<td>{escape(r.consumer)}</td></tr>"
            for r in self.lag
        )
        lag = sum(r.lag or 0 for r in self.lag)
        actions = _by_label("tact_actions_total", "play")
        outcomes = _by_label("tact_outcomes_total", "status")
        dead = _by_label("tact_dead_letters_total", "reason")
        when = time.strftime("%H:%M:%S", time.gmtime(self.lag_at)) if self.lag_at else "not yet"
        problem = f", {escape(self.lag_error)}" if self.lag_error else ""
        up = int(time.time() - self.started)
        about = {**(self.about() if self.about else {}), "up": f"{up // 3600}h {up // 60 % 60}m"}
        facts = "; ".join(f"{escape(k)} {escape(v)}" for k, v in about.items())
        return (
            "<!doctype html><html><head><meta charset='utf-8'><title>tact worker</title>"
            "<meta http-equiv='refresh' content='15'><style>body{font-family:system-ui,"
            "sans-serif;margin:2em}td,th{padding:.2em .8em;text-align:right}</style></head><body>"
            f"<h1>tact worker: {escape(self.group)}</h1><p>{facts}</p>"
            f"<p><b>{lag:,}</b> records behind; <b>{self.events_per_second():,.0f}</b> events/s "
            f"over the last 30 s; {metrics.total('tact_events_total'):,.0f} events, "
            f"{metrics.total('tact_stale_events_total'):,.0f} stale.</p>"
            f"<h2>Lag (read {when} UTC{problem})</h2>"
            "<table><tr><th>topic</th><th>partition</th><th>committed</th><th>end</th>"
            f"<th>lag</th><th>oldest unprocessed</th><th>consumer</th></tr>{rows}</table>"
            f"<h2>Decided</h2><p>actions by play: {_fmt(actions)}</p>"
            f"<p>outcomes by status: {_fmt(outcomes)}</p>"
            f"<p>dead letters: {_fmt(dead) or 'none'}</p>"
            "<p><a href='/metrics'>/metrics</a></p></body></html>"
        )

    def serve(self, port: int, host: str = "127.0.0.1") -> WSGIServer:
        """Serve in background threads until the process ends."""
        try:
            server = make_server(host, port, self.app, handler_class=_Quiet)
        except OSError as exc:
            why = exc.strerror or str(exc)
            if exc.errno == errno.EADDRINUSE:
                why += (
                    ": another tact worker on this host may have it; give each worker its own "
                    "TACT_METRICS_PORT, or TACT_METRICS_PORT=0 to go without the page"
                )
            raise ConfigurationError(
                f"the status page cannot listen on {host or '(every interface)'}:{port} "
                f"(TACT_METRICS_HOST, TACT_METRICS_PORT): {why}"
            ) from None
        threading.Thread(target=server.serve_forever, name="tact-status", daemon=True).start()
        threading.Thread(target=self._run, name="tact-lag", daemon=True).start()
        return server


def _fmt(values: dict[str, float]) -> str:
    return ", ".join(f"{escape(k)} {v:,.0f}" for k, v in sorted(values.items()) if v)
