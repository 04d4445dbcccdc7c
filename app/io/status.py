"""The worker's HTTP endpoint on TACT_METRICS_PORT: Prometheus metrics at /metrics, at / a
small status page (health, lag per partition, throughput, what was decided) for a person to look
at, and at /health the health verdict as one line of text (status 503 unless healthy).

The consumer lag shown here and exported as gauges comes from a background thread that reads
the group's committed and end offsets every `interval_s` seconds with the same code as
`tact lag` (app/io/lag.py), so the page, the metrics and the command agree. The same thread
pings Redis, and the page opens with a one-line verdict on the worker's health (app/io/health.py).
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
from app.io import clients, metrics
from app.io.health import Health, Readings, verdict
from app.io.lag import PartitionLag, group_lag
from app.settings import Settings

log = logging.getLogger(__name__)

NOT_MEASURED = "not measured yet"

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
        self,
        settings: Settings,
        about: Callable[[], dict[str, str]] | None = None,
        lagging_after_s: float | None = 300.0,
    ) -> None:
        """The worker's group (TACT_APP_ID) and input topics, read every TACT_LAG_INTERVAL_S;
        lagging when the oldest unprocessed record is older than `lagging_after_s` (the
        policy's freshness limit)."""
        self.settings = settings
        self.group = settings.app_id
        self.topics = set(settings.input_topics)
        self.interval_s = settings.lag_interval_s
        self.about = about  # what the worker runs: versions of tact, policy, catalog, models
        self.lagging_after_s = lagging_after_s
        self.started = time.time()
        self.lag: list[PartitionLag] = []
        self.lag_at = 0.0
        self.lag_error = ""
        self.group_missing = False  # the last lag read found no group: not joined yet
        self.redis_error = ""
        self._events: deque[tuple[float, float]] = deque(maxlen=120)  # (time, events so far)
        self._events_lock = threading.Lock()  # the lag thread and page requests both add
        self._metrics_app = make_wsgi_app()
        self._stop = threading.Event()
        self._marks: list[tuple[float, float]] = []  # (events, stale) at the last two polls

    def poll_lag(self) -> None:
        """Read the group's lag once and export it."""
        try:
            rows = [r for r in group_lag(self.settings, [self.group]) if r.topic in self.topics]
        except ConfigurationError as exc:  # no such group yet: the worker has not joined
            self.lag_error, self.group_missing = str(exc), True
            return
        except Exception as exc:  # Kafka unreachable, or slow; keep serving
            self.lag_error, self.group_missing = str(exc), False
            return
        self.lag, self.lag_at, self.lag_error, self.group_missing = rows, time.time(), "", False
        for r in rows:
            metrics.LAG_RECORDS.labels(r.topic, str(r.partition)).set(r.lag or 0)
            metrics.LAG_SECONDS.labels(r.topic, str(r.partition)).set(r.time_lag_s or 0.0)

    def poll_redis(self) -> None:
        """Ping Redis once; remember why it did not answer."""
        client = clients.redis_client(self.settings, socket_connect_timeout=3, socket_timeout=3)
        try:
            client.ping()
            self.redis_error = ""
        except Exception as exc:  # any failure is the page's news, never the thread's end
            self.redis_error = f"Redis at {self.settings.redis_shown} did not answer a ping ({exc})"
        finally:
            client.close()

    def health(self) -> Health:
        return verdict(
            Readings(
                lag=self.lag,
                lag_read=bool(self.lag_at),
                lag_error=self.lag_error,
                group_missing=self.group_missing,
                redis_error=self.redis_error,
                lagging_after_s=self.lagging_after_s,
                events=metrics.total("tact_events_total"),
                unknown_sku_events=metrics.total("tact_unknown_sku_events_total"),
                **self._recent(),
            )
        )

    def _recent(self) -> dict[str, float]:
        """Events and stale events since the older of the last two marks (one or two lag
        intervals): what is happening now, not since the start."""
        events, stale = _counts()
        with self._events_lock:
            then = self._marks[0] if self._marks else (0.0, 0.0)
        return {"recent_events": events - then[0], "recent_stale": stale - then[1]}

    def _run(self) -> None:
        while True:
            with self._events_lock:
                self._marks.append(_counts())
                del self._marks[:-2]
            self.poll_lag()
            self.poll_redis()
            with self._events_lock:
                self._events.append((time.time(), metrics.total("tact_events_total")))
            # every second while the broker answers that the group has not joined yet (the
            # worker joins seconds after the page starts), then every interval
            wait = min(self.interval_s, 1.0) if self.group_missing else self.interval_s
            if self._stop.wait(wait):
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
        path = environ.get("PATH_INFO", "/")
        if path == "/metrics":
            body: Iterable[bytes] = self._metrics_app(environ, start_response)
            return body
        if path == "/health":  # for scripts and probes: the verdict, 503 unless healthy
            health = self.health()
            code = "200 OK" if health.healthy else "503 Service Unavailable"
            start_response(code, [("Content-Type", "text/plain; charset=utf-8")])
            return [f"{health.line()}\n".encode()]
        page = self.page().encode("utf-8")
        start_response("200 OK", [("Content-Type", "text/html; charset=utf-8")])
        return [page]

    def page(self) -> str:
        rows = "".join(
            f"<tr><td>{escape(r.topic)}</td><td>{r.partition}</td>"
            f"<td>{_or(r.committed, 'nothing yet')}</td><td>{r.end}</td>"
            f"<td>{_or(r.lag, NOT_MEASURED)}</td>"
            f"<td>{NOT_MEASURED if r.time_lag_s is None else f'{r.time_lag_s:.1f} s'}</td>"
            f"<td>{escape(r.consumer)}</td></tr>"
            for r in self.lag
        )
        actions = _by_label("tact_actions_total", "play")
        outcomes = _by_label("tact_outcomes_total", "status")
        dead = _by_label("tact_dead_letters_total", "reason")
        events = metrics.total("tact_events_total")
        unknown = metrics.total("tact_unknown_sku_events_total")
        health = self.health()
        up = int(time.time() - self.started)
        about = {
            "group": self.group,
            **(self.about() if self.about else {}),
            "up": f"{up // 3600}h {up // 60 % 60}m",
        }
        facts = "; ".join(f"{escape(k)} {escape(v)}" for k, v in about.items())
        return (
            "<!doctype html><html><head><meta charset='utf-8'><title>tact worker</title>"
            "<meta http-equiv='refresh' content='15'><style>body{font-family:system-ui,"
            "sans-serif;margin:2em}td,th{padding:.2em .8em;text-align:right}"
            ".healthy{color:#080}.unwell{color:#b00}</style></head><body>"
            f"<h1>tact worker</h1><p>{facts}</p>"
            f"<p class='{'healthy' if health.healthy else 'unwell'}'>health: "
            f"<b>{escape(health.word)}</b>{escape(': ' + health.detail if health.detail else '')}"
            "</p>"
            f"<p>{self._behind()}; <b>{self.events_per_second():,.0f}</b> events/s over the "
            f"last 30 s; {events:,.0f} events, "
            f"{metrics.total('tact_stale_events_total'):,.0f} stale, {unknown:,.0f} naming SKUs "
            f"not in the catalog{' (check TACT_CATALOG)' if unknown else ''}.</p>"
            f"<h2>Lag ({self._lag_read()})</h2>"
            "<table><tr><th>topic</th><th>partition</th><th>committed</th><th>end</th>"
            f"<th>lag</th><th>oldest unprocessed</th><th>consumer</th></tr>{rows}</table>"
            f"<h2>Decided</h2><p>actions by play: {_fmt(actions) or 'none yet'}</p>"
            f"<p>outcomes by status: {_fmt(outcomes) or 'none yet'}</p>"
            f"<p>dead letters: {_fmt(dead) or 'none'}</p>"
            "<p><a href='/metrics'>/metrics</a>, <a href='/health'>/health</a></p></body></html>"
        )

    def _behind(self) -> str:
        """Records behind, in words: not a number before the lag has been read."""
        if not self.lag_at or not self.lag:  # no group yet, or nothing committed in it
            return f"lag {NOT_MEASURED}"
        behind = sum(r.lag or 0 for r in self.lag)
        unmeasured = sum(r.lag is None for r in self.lag)
        more = f" (+{unmeasured} partitions with nothing committed yet)" if unmeasured else ""
        return f"<b>{behind:,}</b> records behind{more}"

    def _lag_read(self) -> str:
        problem = f"; last read failed: {escape(self.lag_error)}" if self.lag_error else ""
        if not self.lag_at:
            return f"{NOT_MEASURED}{problem}"
        return f"read {time.strftime('%H:%M:%S', time.gmtime(self.lag_at))} UTC{problem}"

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


def _or(value: int | None, missing: str) -> str:
    return missing if value is None else str(value)


def _fmt(values: dict[str, float]) -> str:
    return ", ".join(f"{escape(k)} {v:,.0f}" for k, v in sorted(values.items()) if v)


def _counts() -> tuple[float, float]:
    return metrics.total("tact_events_total"), metrics.total("tact_stale_events_total")
