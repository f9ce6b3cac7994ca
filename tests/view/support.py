"""What the view tests share: a view with its archive, and the time they start from."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from meterline.clock import from_ms, to_ms
from meterline.usage import MemoryUsageQuery
from meterline.view import Delta, ReservationKey, SyncedView
from meterline.view.model import HOUR_MS, floor_to

# Redis expires keys by the real clock, so the test's times stay near now.
T0 = floor_to(to_ms(datetime.now(UTC)), HOUR_MS) - 2 * HOUR_MS


@dataclass
class Rig:
    """A view with its archive (the rollups the aggregator writes before applying to the view)
    and a way to lose the view's content (a Redis FLUSHDB, or its memory twin)."""

    view: SyncedView
    archive: MemoryUsageQuery
    flush: Callable[[], None]

    def record(self, deltas: Sequence[Delta], counted: Sequence[ReservationKey] = ()) -> None:
        for d in deltas:
            minute = from_ms(d.minute_ms)
            args = (d.aggregation, minute, d.value, d.count, d.latest_ms)
            self.archive.add(d.tenant_id, d.customer, d.meter, *args)
        self.view.apply(deltas, counted)


RigFactory = Callable[[], Rig]
