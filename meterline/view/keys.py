"""The Redis key layout of the view. Every per-customer key carries the `{tenant/customer}` hash
tag, so one customer's keys share a Redis Cluster slot.

- `<p>:v:{t/c}:<meter>:M<YYYYMM>`: hash of the month: `T` (whole month), `d<DD>` (a day),
  `h<DDHH>` (an hour); for `latest` meters field `f@` holds the event time of field `f`.
  Expires `month_grace_days` after the month ends (late events and periods that straddle months).
- `<p>:v:{t/c}:<meter>:z<YYYYMMDD>`: sorted set of the day's minutes (member and score = the
  minute's epoch ms); `<p>:v:{t/c}:<meter>:m<YYYYMMDD>`: hash minute -> value (and `minute@`).
  Expire `minute_grace_days` after the day ends.
- `<p>:v:{t/c}:<meter>:e`: the series' settled epoch, moved forward by every delta whose minute
  the view no longer answers itself (`Horizon`); readers that fold in an archived value from
  Postgres check it in the same script, so a late event never leaves them a stale number.
- `<p>:r6:{t/c}:<meter>`: hash of pending reservations, event id -> `amount|at_ms` (never
  expires; `amount` in millionths, `at_ms` the attributed instant its event carries);
  `...:c` a sorted set of counted reservation ids (score: when to forget them).
- `<p>:meta:ready6`, `<p>:meta:rebuild` (the rebuild flag), `<p>:meta:wm` (watermarks).
- `<p>:touched`: sorted set of the customers whose usage changed (`<tenant_id>/<customer>`,
  scored by the counter `<p>:touched:seq`), for threshold detection (`touched.py`).

Every quantity is a whole number of millionths written as a digit string (`meterline.values`;
the scripts add them exactly: `scripts`). The `6` in the ready marker and the reservations'
prefix marks that format: a view written before it (binary floats) has no such marker, so it
reads as empty and is rebuilt from Postgres, reservations included, in the new format.

A rebuild must load every rollup from `Horizon.fields_ms` on (with the default 40 days of month
grace, at most 70 days back; `rebuild.LOOKBACK_DAYS` is 75).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache

from meterline.redis import hash_tag
from meterline.view.model import DAY_MS, HOUR_MS, Span, cover, month_start, next_month


@lru_cache(maxsize=4096)
def _day(day_index: int) -> datetime:
    return datetime.fromtimestamp(day_index * 86_400, UTC)


FORMAT = "6"
"""The quantity format of the layout: millionths as digit strings (see the module docstring)."""


class KeyLayout:
    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.ready = f"{prefix}:meta:ready{FORMAT}"
        self.rebuild = f"{prefix}:meta:rebuild"
        self.watermarks = f"{prefix}:meta:wm"
        self.view_pattern = f"{prefix}:v:*"
        self.reservation_pattern = f"{prefix}:r{FORMAT}:*"
        self.touched = f"{prefix}:touched"
        self.touched_seq = f"{prefix}:touched:seq"

    def series(self, tenant_id: int, customer: str, meter: str) -> str:
        return f"{self.prefix}:v:{hash_tag(tenant_id, customer)}:{meter}"

    def month_key(self, series: str, ms: int) -> str:
        return series + month_suffix(ms)

    def epoch_key(self, series: str) -> str:
        return f"{series}:e"

    def minute_keys(self, series: str, ms: int) -> tuple[str, str]:
        zset, minutes = minute_suffixes(ms)
        return series + zset, series + minutes

    def reservations(self, tenant_id: int, customer: str, meter: str) -> str:
        return f"{self.prefix}:r{FORMAT}:{hash_tag(tenant_id, customer)}:{meter}"


@dataclass(frozen=True, slots=True)
class Horizon:
    """Where the view answers from its own keys at a given time: month, day and hour fields
    from `fields_ms` on, minute buckets from `minutes_ms` on (each a day before its keys may
    expire). Everything earlier is read from the archive (Postgres rollups)."""

    fields_ms: int
    minutes_ms: int

    @staticmethod
    def at(now_ms: int, month_grace_days: int, minute_grace_days: int) -> Horizon:
        return _horizon(now_ms // DAY_MS, month_grace_days, minute_grace_days)

    def holds(self, span: Span) -> bool:
        edge = self.minutes_ms if span.kind == "minute" else self.fields_ms
        return span.start_ms >= edge


@lru_cache(maxsize=64)
def _horizon(day: int, month_grace_days: int, minute_grace_days: int) -> Horizon:
    fields = month_start((day - month_grace_days + 1) * DAY_MS)
    return Horizon(fields, (day - minute_grace_days + 1) * DAY_MS)


@lru_cache(maxsize=8192)
def month_suffix(ms: int) -> str:
    return f":M{_day(ms // DAY_MS):%Y%m}"


@lru_cache(maxsize=8192)
def minute_suffixes(ms: int) -> tuple[str, str]:
    day = f"{_day(ms // DAY_MS):%Y%m%d}"
    return f":z{day}", f":m{day}"


Fields = tuple[tuple[str, tuple[str, ...]], ...]  # (key suffix, fields of that key) per key
Ranges = tuple[tuple[int, int], ...]


@lru_cache(maxsize=4096)
def period_layout(start_ms: int, end_ms: int, horizon: Horizon) -> tuple[Fields, Ranges]:
    """Where a period's usage lives for one series: the fields to read per key suffix, and
    the minute ranges before `horizon` (merged where they touch) to read from the archive.
    The same for every series, so it is computed once per period and horizon."""
    by_suffix: dict[str, list[str]] = {}
    ranges: list[tuple[int, int]] = []
    for span in cover(start_ms, end_ms):
        if not horizon.holds(span):
            if ranges and ranges[-1][1] == span.start_ms:
                ranges[-1] = (ranges[-1][0], span.end_ms)
            else:
                ranges.append((span.start_ms, span.end_ms))
        elif span.kind == "minute":
            by_suffix.setdefault(minute_suffixes(span.start_ms)[1], []).append(str(span.start_ms))
        else:
            by_suffix.setdefault(month_suffix(span.start_ms), []).append(span_field(span))
    return tuple((k, tuple(v)) for k, v in by_suffix.items()), tuple(ranges)


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
    head = f"{prefix}:r{FORMAT}:{{"
    if not key.startswith(head) or key.endswith(":c"):
        return None
    tag, sep, meter = key[len(head) :].rpartition("}:")
    tenant, slash, customer = tag.partition("/")
    if not (sep and slash and tenant.isdigit()):
        return None
    return int(tenant), customer, meter
