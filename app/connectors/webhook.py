"""The webhook connector: each Action POSTed as JSON to a URL.

Headers: `Content-Type: application/json`, `Idempotency-Key: <action_id>` (the same on every
retry and redelivery: receivers drop repeats by it), `X-Tact-Timestamp: <unix seconds>` and
`X-Tact-Signature: sha256=<hex>`, the HMAC-SHA256 of `<timestamp>.<body>` with the shared
secret (`TACT_WEBHOOK_SECRET`), so the receiver can check the request came from tact and is
recent. A 2xx answer is a delivery; 408, 429 and 5xx answers and network errors are retried;
any other answer is a dead letter.
"""

from __future__ import annotations

import hashlib
import hmac
import time
import urllib.error
import urllib.request
from typing import Any

from app import codec
from app.connectors.sdk import DeliveryError

_TRANSIENT = frozenset({408, 425, 429})


def sign(secret: str | bytes, timestamp: str, body: bytes) -> str:
    """The signature header's value for a request body sent at `timestamp`. A `str` secret
    (as read from the environment) is taken as its UTF-8 bytes."""
    key = secret.encode() if isinstance(secret, str) else secret
    mac = hmac.new(key, timestamp.encode() + b"." + body, hashlib.sha256)
    return f"sha256={mac.hexdigest()}"


def verify(
    secret: str | bytes, timestamp: str, body: bytes, signature: str, max_age_s: float = 300
) -> bool:
    """What a receiver checks: the signature matches and the request is recent. A timestamp
    that is not a number is a request that did not come from tact: False, not an error."""
    try:
        fresh = abs(time.time() - float(timestamp)) <= max_age_s
    except ValueError:
        return False
    return fresh and hmac.compare_digest(sign(secret, timestamp, body), signature)


class Webhook:
    def __init__(
        self,
        url: str,
        secret: bytes,
        channels: frozenset[str],
        timeout_s: float = 10.0,
        name: str = "webhook",
    ) -> None:
        self.name = name
        self.url = url
        self.secret = secret
        self.channels = channels
        self.timeout_s = timeout_s

    def deliver(self, action: dict[str, Any]) -> None:
        body = codec.dumps(action)
        timestamp = str(int(time.time()))
        request = urllib.request.Request(
            self.url,
            data=body,
            method="POST",
            headers={
                "Content-Type": "application/json",
                "Idempotency-Key": str(action["action_id"]),
                "X-Tact-Timestamp": timestamp,
                "X-Tact-Signature": sign(self.secret, timestamp, body),
                "User-Agent": "tact-connector-webhook",
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                response.read()
        except urllib.error.HTTPError as exc:
            transient = exc.code >= 500 or exc.code in _TRANSIENT
            raise DeliveryError(f"HTTP {exc.code} from {self.url}", transient) from None
        except (urllib.error.URLError, TimeoutError, OSError) as exc:
            raise DeliveryError(f"cannot reach {self.url}: {exc}", True) from None
