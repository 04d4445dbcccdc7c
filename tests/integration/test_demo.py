"""`tact demo` (what `make demo` runs) shows live actions, dead letters and a summary."""

from __future__ import annotations

import re
import subprocess

import redis

from app.io.kafka_admin import admin_client
from app.settings import Settings
from tests.integration.conftest import ROOT, TACT, settings_env


def test_demo_shows_actions_and_a_summary(stack: Settings, tmp_path) -> None:  # type: ignore[no-untyped-def]
    out = subprocess.run(
        [
            str(TACT),
            "demo",
            "--customers",
            "25",
            "--rate",
            "3000",
            "--seed",
            "4",
            "--exit-when-done",
            "--log-dir",
            str(tmp_path),
        ],
        env=settings_env(stack),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    text = out.stdout
    shown = re.findall(
        r"^\s+\d\d-\d\d \d\d:\d\d\s+d\S+\s+(assist|expand|commit|protect)", text, re.M
    )
    actions = int(re.search(r"^\s+actions\s+(\d+)", text, re.M).group(1))  # type: ignore[union-attr]
    assert actions == len(shown) > 0
    assert re.search(r"^\s+dead letters\s+3\s", text, re.M)
    assert "first action" in text
    assert (tmp_path / "demo-worker.log").stat().st_size > 0

    # Its own namespace, removed at the end: nothing reached the configured topics or state.
    app_id = re.search(r"app id (tact-demo-\w+)", text).group(1)  # type: ignore[union-attr]
    tag = app_id.removeprefix("tact-demo-")
    assert re.search(r"removed this run's [1-9]\d* topics and [1-9]\d* Redis keys", text)
    admin = admin_client(stack)
    try:
        left = [t for t in admin.list_topics() if tag in t]
    finally:
        admin.close()
    assert left == []
    client = redis.Redis.from_url(stack.redis_url.get_secret_value())
    assert not list(client.scan_iter(match=f"tact:{app_id}:*"))
    assert not list(client.scan_iter(match=f"tact:{stack.app_id}:*"))  # the configured app id
