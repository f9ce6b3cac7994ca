"""The real-time usage view (Redis in production, memory in tests); see README.md."""

from meterline.view.memory import MemoryUsageView
from meterline.view.model import (
    Archive,
    Delta,
    IdGuard,
    IdHeld,
    Reservation,
    ReservationKey,
    ReserveAsk,
    UsageView,
    ViewNotReady,
    attributed_ms,
    minute_range,
)
from meterline.view.redis_view import RedisUsageView
from meterline.view.sync import ApplyOutcome, Gate, PendingReservation, SyncedView, stream_name

__all__ = [
    "ApplyOutcome",
    "Archive",
    "Delta",
    "Gate",
    "IdGuard",
    "IdHeld",
    "MemoryUsageView",
    "PendingReservation",
    "RedisUsageView",
    "Reservation",
    "ReservationKey",
    "ReserveAsk",
    "SyncedView",
    "UsageView",
    "ViewNotReady",
    "attributed_ms",
    "minute_range",
    "stream_name",
]
