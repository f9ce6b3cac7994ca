"""Ingest's own settings (`METERLINE_INGEST_*`), read once in `__main__`."""

from __future__ import annotations

import orjson
from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class IngestSettings(BaseSettings):
    """Limits and tuning of the ingest service. Every value has a safe default."""

    model_config = SettingsConfigDict(env_prefix="METERLINE_INGEST_", extra="ignore", frozen=True)

    port: int = Field(8001, ge=1, le=65535)
    max_body_bytes: int = Field(1_048_576, ge=1024)
    """A request body larger than this is refused with 413 while it is read."""
    max_batch_events: int = Field(1000, ge=1)
    lateness_days: int = Field(35, ge=1)
    """Events older than this are refused (the ledger keeps them longer: retention's
    `METERLINE_RETENTION_LEDGER_DAYS`, which must exceed this by a day)."""
    dedupe_window_s: float = Field(3600.0, gt=0)
    """How long the Redis fast path remembers ids (the ledger is the final word beyond it)."""
    dedupe_timeout_s: float = Field(0.5, gt=0)
    """Longest a merged dedupe store call may take; a request waits at most twice this."""
    produce_timeout_s: float = Field(10.0, gt=0)
    """A request whose events the broker has not acknowledged by then gets 503."""
    tenant_rate: float = Field(200_000.0, gt=0)
    """Events per second each tenant may send (a token bucket holding one second's worth)."""
    tenant_rates: dict[str, float] = Field(default_factory=dict)
    """Per-tenant overrides by tenant name, as JSON: `{"acme": 5000}`."""
    max_inflight_events: int = Field(100_000, ge=1000)
    """Events being produced at once; beyond it requests get 429 (bounded memory)."""
    max_active_requests: int = Field(128, ge=4)
    """The most POST /v1/events requests handled at once; beyond the limit in force (this, or
    lower while ingest answers slower than `target_latency_s`) a request gets 429 at once, so
    an overloaded ingest sheds load instead of queueing requests until clients time out."""
    target_latency_s: float = Field(0.5, gt=0)
    """The time from a request's last body byte to its answer that ingest aims to stay under;
    the limit of requests in progress shrinks while answers take longer (ingest/concurrency.py)."""
    target_loop_lag_s: float = Field(0.002, gt=0)
    """While ingest's event loop runs later than this, tenants above their share of its recent
    work get 429 before their bodies are read, so the others keep their latency
    (ingest/fairness.py)."""
    auth_cache_s: float = Field(15.0, gt=0, le=30)
    catalog_cache_s: float = Field(10.0, gt=0)
    producer_queue_max: int = Field(200_000, ge=1)
    """Messages the producer may hold unacknowledged; beyond it requests get 429."""
    linger_ms: int = Field(5, ge=0, le=1000)
    graceful_timeout_s: float = Field(25.0, gt=0)

    @field_validator("tenant_rates", mode="before")
    @classmethod
    def _json(cls, v: object) -> object:
        return orjson.loads(v) if isinstance(v, str | bytes) else v

    @field_validator("tenant_rates")
    @classmethod
    def _positive(cls, v: dict[str, float]) -> dict[str, float]:
        bad = [name for name, rate in v.items() if rate <= 0]
        if bad:
            raise ValueError(f"rates must be positive; not for {bad}")
        return v
