"""The example app's settings, from `METERLINE_EXAMPLE_*` environment variables."""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass

PREFIX = "METERLINE_EXAMPLE_"


@dataclass(frozen=True, slots=True)
class Settings:
    """`entitlements_url`: Meterline's entitlements API (checks, consumes, usage, billing).
    `api_key`: one key of the tenant with the scopes `billing`, `read` and `ingest`.
    `public_url`: where browsers reach this app (Checkout returns there)."""

    entitlements_url: str
    api_key: str
    host: str = "127.0.0.1"
    port: int = 8010
    public_url: str = ""
    cookie_secret: str = ""

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Raises ValueError naming every missing variable at once."""
        env = os.environ if env is None else env
        missing = [
            PREFIX + name for name in ("ENTITLEMENTS_URL", "API_KEY") if not env.get(PREFIX + name)
        ]
        if missing:
            raise ValueError("set " + ", ".join(missing))
        port = int(env.get(PREFIX + "PORT", "8010"))
        host = env.get(PREFIX + "HOST", "127.0.0.1")
        return cls(
            entitlements_url=env[PREFIX + "ENTITLEMENTS_URL"].rstrip("/"),
            api_key=env[PREFIX + "API_KEY"],
            host=host,
            port=port,
            public_url=env.get(PREFIX + "PUBLIC_URL", f"http://{host}:{port}").rstrip("/"),
            # a random secret signs out every user when the app restarts: fine for an example
            cookie_secret=env.get(PREFIX + "COOKIE_SECRET") or secrets.token_hex(16),
        )
