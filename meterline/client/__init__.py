"""The Python SDK: emit usage (`Meterline`, `AsyncMeterline`) and check entitlements
(`Entitlements`); the FastAPI dependency is `meterline.client.fastapi.require_feature`."""

from meterline.client._core import ClientStats, DropPolicy
from meterline.client.entitlements import Entitlement, Entitlements, EntitlementsError
from meterline.client.usage import AsyncMeterline, Meterline

__all__ = [
    "AsyncMeterline",
    "ClientStats",
    "DropPolicy",
    "Entitlement",
    "Entitlements",
    "EntitlementsError",
    "Meterline",
]
