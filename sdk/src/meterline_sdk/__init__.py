"""The Meterline Python SDK: emit usage (`Meterline`, `AsyncMeterline`) and check entitlements
(`Entitlements`, `AsyncEntitlements`); the FastAPI dependency is
`meterline_sdk.fastapi.require_feature` (the `fastapi` extra); receivers of Meterline's
webhooks verify them with `meterline_sdk.webhooks.verify`."""

from meterline_sdk._core import ClientStats, DropPolicy
from meterline_sdk.entitlements import (
    AsyncEntitlements,
    Entitlement,
    Entitlements,
    EntitlementsError,
)
from meterline_sdk.usage import AsyncMeterline, Meterline

__all__ = [
    "AsyncEntitlements",
    "AsyncMeterline",
    "ClientStats",
    "DropPolicy",
    "Entitlement",
    "Entitlements",
    "EntitlementsError",
    "Meterline",
]
