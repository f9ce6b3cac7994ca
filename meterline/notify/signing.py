"""Standard Webhooks v1 signatures: HMAC-SHA256 over `msg_id.timestamp.body`.

The key is the base64-decoded part of a `whsec_` secret (not the whole string, unlike
Stripe's). During a rotation overlap every live secret signs, and `webhook-signature` carries
the signatures space-separated; a receiver accepts the message if any one verifies. The SDK's
`meterline_sdk.webhooks.verify` is the receiving side; both are checked against the spec's
published test vector.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Sequence

PREFIX = "whsec_"
SECRET_BYTES = 32  # the spec asks for 24 to 64 random bytes


def new_secret() -> str:
    return PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """One `v1,<base64>` signature."""
    key = base64.b64decode(secret.removeprefix(PREFIX))
    content = f"{msg_id}.{timestamp}.".encode() + body
    mac = hmac.new(key, content, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


def headers(secrets_: Sequence[str], msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The three `webhook-*` headers of one attempt, signed with every live secret."""
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": " ".join(sign(s, msg_id, timestamp, body) for s in secrets_),
    }
