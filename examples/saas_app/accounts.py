"""Sign-up and the signed-in user: the app's own accounts, kept in a signed cookie.

An account is the app's customer; its id is the customer id Meterline knows it by (the app
chooses it, Meterline creates the customer on first use). A real app keeps accounts in its own
database; the example keeps the id and name in a cookie signed with HMAC-SHA256 so it needs no
storage and survives restarts of the app.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

COOKIE = "saas_account"


@dataclass(frozen=True, slots=True)
class Account:
    id: str
    name: str


def new_account(name: str) -> Account:
    """A new account with a fresh customer id (`acct-<name>-<random>`)."""
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:20] or "user"
    return Account(f"acct-{slug}-{secrets.token_hex(3)}", name.strip()[:60] or slug)


class Cookies:
    """Signs and reads the account cookie."""

    def __init__(self, secret: str) -> None:
        self._key = secret.encode()

    def dump(self, account: Account) -> str:
        payload = base64.urlsafe_b64encode(f"{account.id}\n{account.name}".encode()).decode()
        return f"{payload}.{self._sign(payload)}"

    def load(self, value: str | None) -> Account | None:
        """The account, or None for a missing, forged or malformed cookie."""
        payload, _, signature = (value or "").partition(".")
        if not payload or not hmac.compare_digest(signature, self._sign(payload)):
            return None
        try:
            account_id, name = base64.urlsafe_b64decode(payload).decode().split("\n", 1)
        except (ValueError, UnicodeDecodeError):
            return None
        return Account(account_id, name)

    def _sign(self, payload: str) -> str:
        return hmac.new(self._key, payload.encode(), hashlib.sha256).hexdigest()
