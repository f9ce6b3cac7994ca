"""The aggregator's settings section (`METERLINE_AGGREGATOR_*`), read once in `__main__`."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class AggregatorSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="METERLINE_AGGREGATOR_", extra="ignore", frozen=True
    )
    group_id: str = "meterline-aggregator"
    port: int = Field(8004, ge=0, le=65535)
    batch_size: int = Field(20_000, ge=1, le=200_000)
    """A batch closes at this many records (why 20,000: aggregator/README.md, settings)."""
    batch_ms: int = Field(100, ge=1, le=60_000)
    """...or this long after its first record, whichever comes first."""
    stall_s: float = Field(30.0, gt=0)
    """/readyz fails when there is lag and no batch committed for this long."""
    catalog_ttl_s: float = Field(30.0, ge=0)
    rebuild_ttl_s: int = Field(120, ge=5)
    mark_touched: bool = True
    """Mark each batch's customers in the view for threshold detection (meterline/view/
    touched.py), in the same Redis call as the batch. Off only where no entitlements service
    announces thresholds of ingested usage (bench/bench_thresholds.py compares the two)."""
    crash_at: str = ""
    """TEST HOOK ONLY: `point:probability[,point:probability]`; see faults.py."""
