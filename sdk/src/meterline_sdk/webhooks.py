"""Verifying Meterline's outbound webhooks (Standard Webhooks v1) on the receiving side.

    from meterline_sdk.webhooks import verify, WebhookVerificationError

    event = verify(request_body, request.headers, "whsec_...")  # raises if not genuine

`verify` checks that the three `webhook-*` headers are present, that `webhook-timestamp` is
within `tolerance` seconds of now (default 300, both ways: an old capture sent again is a
replay), and that one of the `v1` signatures in `webhook-signature` is
base64(HMAC-SHA256(key, "id.timestamp.body")) for one of your secrets (pass the old and the new
one while a rotation overlaps), compared in constant time. Give it the raw body bytes exactly as
received. A captured request sent again *within* the tolerance repeats its `webhook-id` and
`webhook-timestamp` together: `ReplayGuard` remembers the pairs it accepted for twice the
tolerance and refuses them (a genuine retry has a new timestamp and passes). Meterline delivers
at least once, so also keep the `webhook-id`s you processed: they are the idempotency key.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import orjson

PREFIX = "whsec_"
DEFAULT_TOLERANCE_S = 300.0


class WebhookVerificationError(Exception):
    """The delivery is not genuine or not fresh; `reason` says which check failed:
    missing_headers, bad_timestamp, too_old, too_new, bad_signature, bad_secret, replayed."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def verify(
    payload: bytes | str,
    headers: Mapping[str, str],
    secret: str | Sequence[str],
    tolerance: float = DEFAULT_TOLERANCE_S,
    now: Callable[[], float] = time.time,
) -> Any:
    """The parsed JSON body of a genuine, fresh delivery; raises WebhookVerificationError."""
    body = payload.encode() if isinstance(payload, str) else bytes(payload)
    msg_id, stamp, signatures = _headers(headers)
    _fresh(stamp, tolerance, now())
    expected = [_sign(key, msg_id, stamp, body) for key in _keys(secret)]
    if not any(hmac.compare_digest(e, s) for e in expected for s in signatures):
        raise WebhookVerificationError("bad_signature", "no signature matches")
    return orjson.loads(body)


class ReplayGuard:
    """Refuses a delivery whose (`webhook-id`, `webhook-timestamp`) it already accepted (one
    process; older pairs are outside the tolerance and `verify` refuses them anyway)."""

    def __init__(
        self, tolerance: float = DEFAULT_TOLERANCE_S, now: Callable[[], float] = time.time
    ) -> None:
        self._tolerance = tolerance
        self._now = now
        self._seen: dict[str, float] = {}
        self._lock = threading.Lock()

    def verify(
        self, payload: bytes | str, headers: Mapping[str, str], secret: str | Sequence[str]
    ) -> Any:
        """`verify`, then refuse a request already accepted (reason `replayed`)."""
        event = verify(payload, headers, secret, self._tolerance, self._now)
        h = _lower(headers)
        seen = f"{h['webhook-id']} {h['webhook-timestamp']}"
        with self._lock:
            cutoff = self._now() - 2 * self._tolerance
            self._seen = {k: t for k, t in self._seen.items() if t > cutoff}
            if seen in self._seen:
                raise WebhookVerificationError("replayed", f"request {seen} already received")
            self._seen[seen] = self._now()
        return event


def _lower(headers: Mapping[str, str]) -> dict[str, str]:
    return {k.lower(): v for k, v in headers.items()}


def _headers(headers: Mapping[str, str]) -> tuple[str, int, list[str]]:
    h = _lower(headers)
    msg_id, stamp, sig = h.get("webhook-id"), h.get("webhook-timestamp"), h.get("webhook-signature")
    if not msg_id or not stamp or not sig:
        raise WebhookVerificationError("missing_headers", "missing required webhook headers")
    try:
        seconds = int(stamp)
    except ValueError:
        raise WebhookVerificationError(
            "bad_timestamp", "webhook-timestamp is not an integer"
        ) from None
    v1 = [s.split(",", 1)[1] for s in sig.split(" ") if s.startswith("v1,")]
    return msg_id, seconds, v1


def _fresh(stamp: int, tolerance: float, now: float) -> None:
    if stamp < now - tolerance:
        raise WebhookVerificationError("too_old", "message timestamp too old")
    if stamp > now + tolerance:
        raise WebhookVerificationError("too_new", "message timestamp too new")


def _keys(secret: str | Sequence[str]) -> list[bytes]:
    secrets = [secret] if isinstance(secret, str) else list(secret)
    try:
        return [base64.b64decode(s.removeprefix(PREFIX), validate=True) for s in secrets]
    except (binascii.Error, ValueError):
        raise WebhookVerificationError("bad_secret", "a secret is not whsec_ + base64") from None


def _sign(key: bytes, msg_id: str, stamp: int, body: bytes) -> str:
    mac = hmac.new(key, f"{msg_id}.{stamp}.".encode() + body, hashlib.sha256).digest()
    return base64.b64encode(mac).decode()
