"""`tact demo`: the sample stream (live actions, dead letters, a summary) and the closed loop
with simulated shoppers that `make demo` runs; each in its own namespace, removed at the end."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import redis

from app.io.kafka_admin import admin_client
from app.io.redis_store import app_key_patterns
from app.settings import Settings
from tests.integration.conftest import TACT, settings_env


def run_demo(stack: Settings, log_dir: Path, *options: str) -> subprocess.CompletedProcess[str]:
    """Run from an empty directory, and check the run left nothing there nor in its files."""
    where = log_dir / "cwd"
    where.mkdir()
    env = {k: v for k, v in settings_env(stack).items() if k != "TACT_DATA_DIR"}
    out = subprocess.run(
        [str(TACT), "demo", *options, "--exit-when-done", "--log-dir", str(log_dir)],
        env=env,
        cwd=where,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert list(where.iterdir()) == []  # no catalog, no worker data dir where it ran
    files = re.search(r"files in (\S+)$", out.stdout, re.M)
    assert files and not Path(files[1]).exists(), out.stdout  # said where, and removed
    assert f"the worker's and the learner's logs stay in {log_dir}" in out.stdout
    return out


def test_demo_shows_actions_and_a_summary(stack: Settings, tmp_path) -> None:  # type: ignore[no-untyped-def]
    out = run_demo(stack, tmp_path, "--customers", "25", "--rate", "3000", "--seed", "4")
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
    assert re.search(r"removed this run's [1-9]\d* topics, [1-9]\d* Redis keys and files", text)
    admin = admin_client(stack)
    try:
        left = [t for t in admin.list_topics() if tag in t]
    finally:
        admin.close()
    assert left == []
    client = redis.Redis.from_url(stack.redis_url.get_secret_value())
    for app in (app_id, stack.app_id):  # (and nothing of the configured app id)
        for pattern in app_key_patterns(f"tact:{app}"):
            assert not list(client.scan_iter(match=pattern)), pattern


def test_the_closed_loop_demo_plays_simulated_shoppers_live(stack: Settings, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """`tact demo --world`: the simulator's shoppers, through Kafka and the real worker, and
    what tact added against never upselling the same shoppers; its namespace removed."""
    out = run_demo(stack, tmp_path, "--world", "--customers", "10", "--days", "2", "--seed", "2")
    assert out.returncode == 0, out.stdout + out.stderr
    text = out.stdout
    played = int(re.search(r"played\s+([\d,]+) events live", text).group(1).replace(",", ""))  # type: ignore[union-attr]
    decisions = int(re.search(r"decisions\s+([\d,]+)", text).group(1).replace(",", ""))  # type: ignore[union-attr]
    assert played > 20 and decisions > 0
    last = [line for line in text.splitlines() if line.startswith("-- day")][-1]
    assert last.startswith("-- day  2.0 of 2:")  # the last days too, whatever the pace
    assert re.search(r"tact [\d,.-]+, never upselling [\d,.-]+: tact added [+-][\d,.]+", text)
    # beside it, the same engine kept at its priors on the same shoppers, and by period
    assert re.search(r"at its priors tact added [+-][\d,.]+; learning live it added", text)
    assert len(re.findall(r"^ +days [\d.]+-[\d.]+ +[+-][\d,.]+ +[+-][\d,.]+$", text, re.M)) == 5
    assert "removed this run's" in text
    worker_log = (tmp_path / "demo-worker.log").read_text()
    assert '"dead letter' not in worker_log  # every simulated event was valid
    # as deployed: the worker learns nothing itself, the learner publishes what it learns
    assert "published models" in (tmp_path / "demo-learner.log").read_text()
