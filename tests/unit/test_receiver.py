"""`tact connector receive`, the receiver the README's connector recipe POSTs to: it takes what the
real webhook connector sends, signed with the same secret, shows each Action once, and refuses
a request signed with another secret."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from app.connectors.sdk import DeliveryError
from app.connectors.webhook import Webhook

TACT = Path(sys.executable).with_name("tact")
ENV = {"PATH": "/usr/bin:/bin", "TACT_WEBHOOK_SECRET": "s3cret"}


def action(n: int, channel: str) -> dict[str, Any]:
    """What the webhook POSTs (the fields the receiver shows; the rest passes through)."""
    return {
        "action_id": f"{n:032x}",
        "customer_id": f"c{n}",
        "play": "expand",
        "channel": channel,
        "offer_sku": "RUN-SOCK-01",
        "frame": "completeness",
        "intensity": "low",
    }


def test_the_receiver_takes_the_webhooks_signed_posts() -> None:
    receiver = subprocess.Popen(
        [str(TACT), "connector", "receive", "--port", "0"],
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert receiver.stdout is not None
        first = receiver.stdout.readline()
        port = re.search(r"http://127\.0\.0\.1:(\d+)/", first)
        assert port, first
        url = f"http://127.0.0.1:{port[1]}/hook"
        email, sms = action(1, "email"), action(2, "sms")
        webhook = Webhook(url, b"s3cret", frozenset({"email", "sms"}))
        for one in (email, sms, email):  # the third is a retry: taken, not shown again
            webhook.deliver(one)
        with pytest.raises(DeliveryError) as refused:
            Webhook(url, b"other", frozenset({"email"})).deliver(sms)
        assert "HTTP 401" in str(refused.value) and not refused.value.transient
    finally:
        receiver.send_signal(signal.SIGTERM)
        out, err = receiver.communicate(timeout=10)
    assert receiver.returncode == 0, err
    lines = out.splitlines()
    assert lines[0].startswith("email    c1               expand   RUN-SOCK-01 (completeness, low)")
    assert lines[0].endswith(f"action {email['action_id']}")
    assert lines[1].startswith("sms      c2 ")
    assert lines[2].startswith("refused a request: its signature does not match")
    assert lines[3] == "received 2 Actions (email 1, sms 1); refused 1"


def test_the_receiver_needs_the_secret() -> None:
    run = subprocess.run(
        [str(TACT), "connector", "receive"],
        env={"PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 2 and "Traceback" not in run.stderr
    assert "set TACT_WEBHOOK_SECRET, the same as the webhook connector's" in run.stderr
