"""Usage series from the Postgres minute rollups (interface, Postgres and memory); see README.md."""

from meterline.usage.memory import MemoryUsageQuery
from meterline.usage.model import UsagePoint, UsageSeries, UsageStore
from meterline.usage.postgres import UsageQuery

__all__ = ["MemoryUsageQuery", "UsagePoint", "UsageQuery", "UsageSeries", "UsageStore"]
