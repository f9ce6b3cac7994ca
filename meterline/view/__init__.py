"""The real-time usage view (Redis in production, memory in tests); see README.md."""

from meterline.view.memory import MemoryUsageView
from meterline.view.model import Delta, Reservation, ReservationKey, UsageView
from meterline.view.redis_view import RedisUsageView
from meterline.view.sync import ApplyOutcome, Gate, PendingReservation, SyncedView, stream_name

__all__ = [
    "ApplyOutcome",
    "Delta",
    "Gate",
    "MemoryUsageView",
    "PendingReservation",
    "RedisUsageView",
    "Reservation",
    "ReservationKey",
    "SyncedView",
    "UsageView",
    "stream_name",
]
