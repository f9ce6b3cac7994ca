"""Idempotency-Key handling, as Stripe documents it.

A key (≤ 255 characters) is scoped to the API key that sent it. The first answer of a request
that started executing (2xx, or an error marked `saved`, such as a 500) is stored with a
fingerprint of the method, path and parameters, and replayed with `Idempotent-Replayed: true`.
Validation errors are not stored, so a corrected retry can succeed. The same key with other
parameters is a 400 `idempotency_error`; the same key while the first request still runs is
a 409. Entries expire after `idempotency_ttl_seconds` of emulator time.

The default TTL is 24 h; an injected "500 after processing" is saved and replayed like a
2xx, an injected 429 or "500 before processing" is not. The SDK raises the 400 as
`IdempotencyError`.
"""

from __future__ import annotations

import hashlib
from typing import Any

import orjson

from .errors import StripeError
from .state import Store

JSON = dict[str, Any]
MAX_KEY_LENGTH = 255


def fingerprint(method: str, path: str, params: JSON) -> str:
    """A stable digest of what the request asked for."""
    raw = orjson.dumps([method, path, params], option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(raw).hexdigest()


class Idempotency:
    """Stored answers plus the set of keys whose first request is still running."""

    def __init__(self, store: Store, ttl_seconds: int) -> None:
        self._store = store
        self._ttl = ttl_seconds
        self._running: set[str] = set()

    def lookup(self, scope: str, key: str, digest: str, now: float) -> JSON | None:
        """The saved answer for `key`, None for a new key; raises on misuse (see module)."""
        if len(key) > MAX_KEY_LENGTH:
            raise StripeError(
                400,
                f"Idempotency-Key must be at most {MAX_KEY_LENGTH} characters.",
                code="idempotency_key_too_long",
            )
        full = f"{scope}:{key}"
        if full in self._running:
            raise StripeError(
                409,
                "There is currently another in-progress request using this Idempotency Key.",
                type_="idempotency_error",
                code="idempotency_key_in_use",
            )
        saved = self._store.idempotency.get(full)
        if saved is None or saved["at"] < now - self._ttl:
            return None
        if saved["fingerprint"] != digest:
            raise StripeError(
                400,
                "Keys for idempotent requests can only be used with the same parameters they "
                f"were first used with. Try using a key other than '{key}' if you meant to "
                "execute a different request.",
                type_="idempotency_error",
            )
        return saved

    def begin(self, scope: str, key: str) -> None:
        """Mark the key as running."""
        self._running.add(f"{scope}:{key}")

    def finish(self, scope: str, key: str) -> None:
        """Unmark the key (whatever the outcome)."""
        self._running.discard(f"{scope}:{key}")

    def save(self, scope: str, key: str, digest: str, answer: JSON, now: float) -> None:
        """Store an answer: `status`, `body`, `headers`, `request_id`."""
        self._store.idempotency[f"{scope}:{key}"] = {"fingerprint": digest, "at": now, **answer}
