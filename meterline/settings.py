"""Typed settings, one section per dependency or service, read once at start-up.

Every value comes from the environment (prefix `METERLINE_`). The four backing-service URLs fall
back to the running dev stack's `.meterline/stack.json` when the environment does not set them.
`load_settings()` reports every problem at once as one `ConfigError`, including a Stripe
configuration that points at real Stripe without its own API key and webhook secret (only the
emulator runs without them); `meterline config check` and the entitlements API use it.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal, TypeVar
from urllib.parse import urlsplit

from pydantic import BaseModel, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from meterline.errors import ConfigError
from meterline.stackfile import read_stack

TOPIC_USAGE = "meterline.usage.v1"
TOPIC_DLQ = "meterline.usage.dlq.v1"
EMULATOR_API_KEY = "sk_test_meterline"
# Secrets published in this repository (dev overlays, compose defaults): never valid for Stripe.
PUBLIC_WEBHOOK_SECRETS = frozenset({"whsec_meterline_dev"})


def _section(prefix: str) -> SettingsConfigDict:
    return SettingsConfigDict(env_prefix=prefix, extra="ignore", frozen=True)


class KafkaSettings(BaseSettings):
    model_config = _section("METERLINE_KAFKA_")
    bootstrap: str
    topic: str = TOPIC_USAGE
    dlq_topic: str = TOPIC_DLQ
    partitions: int = 4

    @field_validator("bootstrap")
    @classmethod
    def _hosts(cls, v: str) -> str:
        hosts = v.split(",")
        if not all(re.fullmatch(r"[\w.\-\[\]:]+:\d{1,5}", h.strip()) for h in hosts):
            raise ValueError("must be host:port[,host:port...]")
        return v


class DatabaseSettings(BaseSettings):
    model_config = _section("METERLINE_DATABASE_")
    url: str
    pool_size: int = 8

    @field_validator("url")
    @classmethod
    def _scheme(cls, v: str) -> str:
        if not re.match(r"postgres(ql)?://", v):
            raise ValueError("must be a postgresql:// URL")
        return v


class RedisSettings(BaseSettings):
    model_config = _section("METERLINE_REDIS_")
    url: str
    key_prefix: str = "ml"

    @field_validator("url")
    @classmethod
    def _scheme(cls, v: str) -> str:
        if not re.match(r"(redis|rediss|unix)://", v):
            raise ValueError("must be a redis:// URL")
        return v


class StripeSettings(BaseSettings):
    """Stripe, or the emulator: any plain-http `api_base` outside stripe.com (real Stripe is only
    served over https). Real Stripe needs its own API key and webhook secret (see `problems`);
    the emulator's key is the default, and the dev stack sets a webhook secret of its own."""

    model_config = _section("METERLINE_STRIPE_")
    api_base: str
    api_key: str = EMULATOR_API_KEY
    webhook_secret: str | None = None
    max_network_retries: int = 2

    @property
    def emulated(self) -> bool:
        url = urlsplit(self.api_base)
        host = (url.hostname or "").lower()
        stripe_host = host == "stripe.com" or host.endswith(".stripe.com")
        return url.scheme == "http" and not stripe_host

    def problems(self) -> list[str]:
        """What keeps this configuration from serving real Stripe safely (empty: nothing)."""
        if self.emulated:
            return []
        found = []
        if self.api_key == EMULATOR_API_KEY:
            found.append("METERLINE_STRIPE_API_KEY is not set (the default is the emulator's)")
        if not self.webhook_secret or not self.webhook_secret.strip():
            found.append(
                "METERLINE_STRIPE_WEBHOOK_SECRET is not set: Stripe at "
                f"{self.api_base} needs the endpoint's signing secret (whsec_...)"
            )
        elif self.webhook_secret in PUBLIC_WEBHOOK_SECRETS:
            found.append(
                "METERLINE_STRIPE_WEBHOOK_SECRET is a published development secret; "
                "use the endpoint's own signing secret"
            )
        return found


class ServiceSettings(BaseSettings):
    """Where each HTTP service listens."""

    model_config = _section("METERLINE_")
    host: str = "127.0.0.1"
    ingest_port: int = 8001
    entitlements_port: int = 8002
    reporter_port: int = 8003
    log_level: Literal["debug", "info", "warning", "error"] = "info"


class Settings(BaseModel):
    """All sections. Services take only the sections they need."""

    model_config = {"frozen": True}
    kafka: KafkaSettings
    database: DatabaseSettings
    redis: RedisSettings
    stripe: StripeSettings
    service: ServiceSettings


# Environment variable of each URL, and its key in stack.json.
_STACK_FALLBACK = {
    "METERLINE_KAFKA_BOOTSTRAP": "kafka",
    "METERLINE_DATABASE_URL": "postgres",
    "METERLINE_REDIS_URL": "redis",
    "METERLINE_STRIPE_API_BASE": "stripe",
}

S = TypeVar("S", bound=BaseSettings)


def stack_home(environ: dict[str, str] | None = None) -> Path:
    """The dev stack's folder: `METERLINE_HOME`, else `.meterline` in the working directory."""
    return Path((os.environ if environ is None else environ).get("METERLINE_HOME", ".meterline"))


def load_settings(env: dict[str, str] | None = None) -> Settings:
    """Read and validate every section; raise one ConfigError that lists every problem."""
    environ = _environment(env)
    errors: list[str] = []
    sections: dict[str, Any] = {}
    for name, info in Settings.model_fields.items():
        assert isinstance(info.annotation, type) and issubclass(info.annotation, BaseSettings)
        sections[name] = _load_section(info.annotation, environ, errors)
    if sections["stripe"] is not None:
        errors += sections["stripe"].problems()
    if errors:
        raise ConfigError("invalid settings:\n" + "\n".join(f"  - {e}" for e in errors))
    return Settings(**sections)


def load_section(cls: type[S], env: dict[str, str] | None = None) -> S:
    """One section alone, for commands that need only it; ConfigError lists its problems."""
    errors: list[str] = []
    section = _load_section(cls, _environment(env), errors)
    if section is None:
        raise ConfigError("invalid settings:\n" + "\n".join(f"  - {e}" for e in errors))
    return section


def _environment(env: dict[str, str] | None) -> dict[str, str]:
    environ = dict(os.environ if env is None else env)
    _fill_from_stack(environ)
    return environ


def _fill_from_stack(environ: dict[str, str]) -> None:
    missing = [var for var in _STACK_FALLBACK if not environ.get(var)]
    if not missing:
        return
    stack = read_stack(stack_home(environ))
    if stack is None:
        return
    for var in missing:
        url = stack.urls.get(_STACK_FALLBACK[var])
        if url:
            environ[var] = url


def _load_section(cls: type[S], environ: dict[str, str], errors: list[str]) -> S | None:
    prefix = str(cls.model_config.get("env_prefix", ""))
    values = {
        name: environ[prefix + name.upper()]
        for name in cls.model_fields
        if prefix + name.upper() in environ
    }
    try:
        return cls.model_validate(values)
    except ValidationError as exc:
        for err in exc.errors():
            var = prefix + str(err["loc"][0]).upper() if err["loc"] else prefix
            errors.append(_describe(var, err["msg"], err["type"]))
        return None


def _describe(var: str, msg: str, kind: str) -> str:
    if kind == "missing":
        return (
            f"{var} is not set and no running dev stack was found "
            "(start one with `meterline dev up`, or set the variable)"
        )
    return f"{var}: {msg}"
