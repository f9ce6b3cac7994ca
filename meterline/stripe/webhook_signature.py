"""The signature check of a Stripe webhook, by the official SDK (`WebhookSignature.verify_header`:
an HMAC-SHA256 of `<timestamp>.<body>` under the endpoint's secret, the timestamp at most
`tolerance_s` old). It runs before anything is parsed or stored: a body that fails it is
answered 400 and leaves no trace.
"""

from __future__ import annotations

import stripe


def signature_problem(
    payload: bytes, header: str | None, secret: str, tolerance_s: int
) -> str | None:
    """Why the `Stripe-Signature` header does not hold for `payload`, or None when it does."""
    try:
        text = payload.decode("utf-8")
        stripe.WebhookSignature.verify_header(text, header or "", secret, tolerance_s)
    except UnicodeDecodeError:
        return "the body is not UTF-8"
    except stripe.SignatureVerificationError as exc:
        return f"signature verification failed: {exc.user_message or exc}"
    return None
