"""Settings from the environment, options checked at start and the status page: a wrong value is
a message naming what is wrong, never a traceback; secrets are never echoed."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from app.errors import ConfigurationError
from app.io.status import Status
from app.settings import load_settings

TACT = Path(sys.executable).with_name("tact")


@pytest.mark.parametrize(
    ("name", "value", "says"),
    [
        ("TACT_BATCH_MAX", "abc", "TACT_BATCH_MAX=abc: should be a valid integer"),
        ("TACT_APP_ID", "", "TACT_APP_ID=: should match pattern"),
        ("TACT_METRICS_PORT", "99999", "TACT_METRICS_PORT=99999: should be less than or equal"),
        ("TACT_LOG_LEVEL", "loud", "TACT_LOG_LEVEL=loud: should be 'debug', 'info'"),
        ("TACT_REDIS_URL", "127.0.0.1:6379", "TACT_REDIS_URL: should be a URL starting with"),
    ],
)
def test_a_bad_setting_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, says: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigurationError, match="bad setting") as caught:
        load_settings()
    assert says in str(caught.value)


def test_a_secret_is_never_echoed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TACT_REDIS_URL", "user:hunter2@cache:6379")
    with pytest.raises(ConfigurationError) as caught:
        load_settings()
    assert "hunter2" not in str(caught.value)


def refused(argv: list[str], env: dict[str, str], cwd: Path) -> str:
    """Run `tact argv` with only `env`: it must stop with exit 2 and a message, never a
    traceback; returns what it said."""
    run = subprocess.run(
        [str(TACT), *argv],
        env={**env, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
    )
    assert run.returncode == 2, run.stderr
    assert "Traceback" not in run.stderr
    return run.stderr


def test_the_command_line_says_it_without_a_traceback(tmp_path: Path) -> None:
    said = refused(["topics", "create"], {"TACT_BATCH_MAX": "abc"}, tmp_path)
    assert "TACT_BATCH_MAX=abc" in said


def test_a_taken_status_port_is_explained() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        status = Status("127.0.0.1:1", "test", {"clickstream": "clickstream"}, 60.0)
        with pytest.raises(ConfigurationError, match="TACT_METRICS_PORT"):
            status.serve(port)


@pytest.mark.parametrize(
    "url", ["shop.example/hook", "http://", "http://shop:abc/x", "ftp://h/x?token=s3cret"]
)
def test_a_webhook_url_is_checked_at_start(url: str, tmp_path: Path) -> None:
    env = {"TACT_WEBHOOK_SECRET": "s", "TACT_KAFKA_BOOTSTRAP": "127.0.0.1:1"}
    said = refused(["connector", "run", "webhook", "--url", url], env, tmp_path)
    assert "tact: --url" in said
    assert "s3cret" not in said  # a URL may carry a token: never echoed whole


def test_the_worker_keeps_its_files_under_the_data_dir(tmp_path: Path) -> None:
    from app.io.faust_app import build_app
    from app.settings import Settings

    app = build_app(Settings(data_dir=tmp_path / "w" / "nested", app_id="shop-1"))
    assert Path(app.conf.datadir) == tmp_path / "w" / "nested" / "shop-1"
    assert Path(app.conf.datadir).is_dir()  # made, parents too: Faust makes only the last


def test_the_status_rate_falls_to_zero_when_events_stop() -> None:
    from app.io import metrics

    status = Status("127.0.0.1:1", "test", {"clickstream": "clickstream"}, 60.0)
    metrics.EVENTS.labels("page_view").inc(0)
    total = metrics.EVENTS.labels("page_view")
    status.events_per_second(now=1000.0)
    total.inc(300)
    assert status.events_per_second(now=1030.0) == pytest.approx(10.0)
    assert status.events_per_second(now=1045.0) > 0  # still inside the window
    assert status.events_per_second(now=1075.0) == 0.0  # 30 s with nothing new


def test_the_status_page_says_what_runs() -> None:
    about = {"policy": "default-2026.11", "models": "m1.42"}
    status = Status("127.0.0.1:1", "shop", {"clickstream": "clickstream"}, 60.0, lambda: about)
    page = status.page()
    assert "policy default-2026.11; models m1.42; up 0h 0m" in page
