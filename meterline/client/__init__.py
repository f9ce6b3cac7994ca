"""The Python SDK: emit usage (`Meterline`, `AsyncMeterline`); see README.md."""

from meterline.client._core import ClientStats, DropPolicy
from meterline.client.usage import AsyncMeterline, Meterline

__all__ = ["AsyncMeterline", "ClientStats", "DropPolicy", "Meterline"]
