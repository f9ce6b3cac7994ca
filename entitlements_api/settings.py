"""The entitlements service's own settings (prefix `METERLINE_ENTITLEMENTS_`)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class EntitlementsSettings(BaseSettings):
    """Tuning of the entitlements API; the port is `METERLINE_ENTITLEMENTS_PORT`."""

    model_config = SettingsConfigDict(
        env_prefix="METERLINE_ENTITLEMENTS_", extra="ignore", frozen=True
    )
    port: int = Field(8002, ge=1, le=65535)
    plan_cache_ttl: float = Field(
        30.0,
        ge=0,
        description="at most this many seconds plan data stays cached (90-100%, jittered); "
        "every replica drops an entry as soon as any replica changes it (Redis pub/sub)",
    )
    decision_cache_ttl: float = Field(
        1.0,
        ge=0,
        description="at most this many seconds a plain check's decision stays cached "
        "(90-100%, jittered; refreshed ahead in its last tenth; 0: off)",
    )
    fallback_cache_ttl: float = Field(
        1.0,
        ge=0,
        description="while this replica cannot hear the others' changes (Redis pub/sub down), "
        "cached plan data and decisions live at most this many seconds",
    )
    dedupe_window_s: float = Field(
        3600.0,
        gt=0,
        description="ingest's dedupe window (must equal METERLINE_INGEST_DEDUPE_WINDOW_S): "
        "consume reads and marks ingest's dedupe store, whose key layout depends on it",
    )
    dedupe_timeout_s: float = Field(0.5, gt=0)
    publish_timeout: float = Field(10.0, gt=0)
    view_ready_ttl: float = Field(1.0, ge=0)
    webhook_tolerance_s: int = Field(300, ge=1)
    auth_cache_ttl: float = Field(30.0, ge=0)
    pool_size: int = Field(8, ge=1)
    consume_threads: int = Field(
        32,
        ge=1,
        description="threads that run batches of consumes (each waits on Postgres, Redis and "
        "the broker's acknowledgement; at most CONSUME_BATCHES of them at once)",
    )
    consume_batches: int = Field(
        2,
        ge=1,
        description="batches of concurrent consumes decided at once; consumes that arrive "
        "while they are are decided together in the next batch (entitlements_api/batching.py)",
    )
    drain_seconds: float = Field(10.0, ge=0)
    usage_notices: bool = Field(
        True,
        description="announce thresholds reached by counted usage no one checks: one replica "
        "at a time decides the customers the aggregator marked (meterline/entitlements/"
        "usage_notices.py)",
    )
    usage_notice_interval_s: float = Field(
        1.0, gt=0, description="at most one pass over the marked customers this often"
    )
    usage_notice_max_share: float = Field(
        0.25, gt=0, le=1, description="the detector's passes take at most this share of a core"
    )
