"""The Redis key layout of the view. Every per-customer key carries the `{tenant/customer}` hash
tag, so one customer's keys share a Redis Cluster slot.

- `<p>:v:{t/c}:<meter>:M<YYYYMM>`: hash of the month: `T` (whole month), `d<DD>` (a day),
  `h<DDHH>` (an hour); for `latest` meters field `f@` holds the event time of field `f`.
  Expires `month_grace_days` after the month ends (late events and periods that straddle months).
- `<p>:v:{t/c}:<meter>:z<YYYYMMDD>`: sorted set of the day's minutes (member and score = the
  minute's epoch ms); `<p>:v:{t/c}:<meter>:m<YYYYMMDD>`: hash minute -> value (and `minute@`).
  Expire `minute_grace_days` after the day ends.
- `<p>:r:{t/c}:<meter>`: hash of pending reservations, event id -> `amount|at_ms` (never expires);
  `...:c` a sorted set of counted reservation ids (score: when to forget them).
- `<p>:meta:ready`, `<p>:meta:rebuild` (the rebuild flag), `<p>:meta:wm` (watermarks).
"""

from __future__ import annotations

from datetime import UTC, datetime
from functools import lru_cache

from meterline.redis import hash_tag
from meterline.view.model import DAY_MS, HOUR_MS, Span, next_month


@lru_cache(maxsize=4096)
def _day(day_index: int) -> datetime:
    return datetime.fromtimestamp(day_index * 86_400, UTC)


class KeyLayout:
    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.ready = f"{prefix}:meta:ready"
        self.rebuild = f"{prefix}:meta:rebuild"
        self.watermarks = f"{prefix}:meta:wm"
        self.view_pattern = f"{prefix}:v:*"
        self.reservation_pattern = f"{prefix}:r:*"

    def series(self, tenant_id: int, customer: str, meter: str) -> str:
        return f"{self.prefix}:v:{hash_tag(tenant_id, customer)}:{meter}"

    def month_key(self, series: str, ms: int) -> str:
        return f"{series}:M{_day(ms // DAY_MS):%Y%m}"

    def minute_keys(self, series: str, ms: int) -> tuple[str, str]:
        day = f"{_day(ms // DAY_MS):%Y%m%d}"
        return f"{series}:z{day}", f"{series}:m{day}"

    def reservations(self, tenant_id: int, customer: str, meter: str) -> str:
        return f"{self.prefix}:r:{hash_tag(tenant_id, customer)}:{meter}"


def day_field(ms: int) -> str:
    return f"d{_day(ms // DAY_MS).day:02d}"


def hour_field(ms: int) -> str:
    return f"h{_day(ms // DAY_MS).day:02d}{(ms % DAY_MS) // HOUR_MS:02d}"


def span_field(span: Span) -> str:
    if span.kind == "month":
        return "T"
    return day_field(span.start_ms) if span.kind == "day" else hour_field(span.start_ms)


def month_expiry_s(ms: int, grace_days: int) -> int:
    return (next_month(ms) + grace_days * DAY_MS) // 1000


def minute_expiry_s(ms: int, grace_days: int) -> int:
    return ((ms // DAY_MS + 1) * DAY_MS + grace_days * DAY_MS) // 1000


def parse_reservation_key(prefix: str, key: str) -> tuple[int, str, str] | None:
    """(tenant_id, customer, meter) of a reservation hash key; `None` for other keys."""
    head = f"{prefix}:r:{{"
    if not key.startswith(head) or key.endswith(":c"):
        return None
    tag, sep, meter = key[len(head) :].rpartition("}:")
    tenant, slash, customer = tag.partition("/")
    if not (sep and slash and tenant.isdigit()):
        return None
    return int(tenant), customer, meter
