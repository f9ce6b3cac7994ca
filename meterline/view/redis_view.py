"""`RedisUsageView`: the view in Redis 6.2, every multi-key step one Lua script (EVALSHA).

A batch's deltas go in one script call, however many customers it touches: one round trip per
batch, with the deltas packed into one JSON argument (redis-py encodes each argument separately,
which cost more than the script itself at thousands of arguments per batch). Reads of a period
fetch at most one field per month, day or hour of the period (`meterline.view.model.cover`), so
a calendar month is one field and any period a few dozen.
Reservations are for additive meters (sum, count): their usage is summed.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import orjson
import redis

from meterline.catalog.model import Aggregation
from meterline.clock import Clock, SystemClock
from meterline.view import scripts
from meterline.view.keys import (
    KeyLayout,
    day_field,
    hour_field,
    minute_expiry_s,
    month_expiry_s,
    parse_reservation_key,
    span_field,
)
from meterline.view.model import (
    DAY_MS,
    MINUTE_MS,
    Delta,
    Reservation,
    ReservationKey,
    cover,
    floor_to,
)
from meterline.view.sync import ApplyOutcome, Gate, PendingReservation, SyncedView

AGG_CODE = {
    Aggregation.SUM: "s",
    Aggregation.COUNT: "c",
    Aggregation.MAX: "m",
    Aggregation.LATEST: "l",
}


class RedisUsageView(SyncedView):
    """The view in Redis under key prefix `prefix` (see `meterline.view.keys` for the layout).

    `client` is a redis-py client from `meterline.redis.connect`. Raises `redis.RedisError` when
    Redis does not answer; callers that must not lose work retry.
    """

    def __init__(
        self,
        client: redis.Redis,
        prefix: str = "ml",
        *,
        clock: Clock | None = None,
        month_grace_days: int = 40,
        minute_grace_days: int = 2,
        counted_ttl_s: int = 3600,
    ) -> None:
        self._r = client
        self._keys = KeyLayout(prefix)
        self._clock = clock or SystemClock()
        self._month_grace = month_grace_days
        self._minute_grace = minute_grace_days
        self._counted_ttl_ms = counted_ttl_s * 1000
        self._apply = client.register_script(scripts.APPLY)
        self._usage = client.register_script(scripts.USAGE)
        self._reserve = client.register_script(scripts.RESERVE)
        self._recent = client.register_script(scripts.RECENT)
        self._finish = client.register_script(scripts.FINISH_REBUILD)

    def apply(
        self, deltas: Sequence[Delta], counted_reservations: Sequence[ReservationKey]
    ) -> None:
        self._run_apply(["plain", "", "", "0"], deltas, counted_reservations)

    def apply_gated(
        self, gate: Gate, deltas: Sequence[Delta], counted: Sequence[ReservationKey]
    ) -> ApplyOutcome:
        prev = "" if gate.prev_offset is None else str(gate.prev_offset)
        head = ["gated", gate.stream, prev, str(gate.next_offset)]
        return ApplyOutcome(self._run_apply(head, deltas, counted))

    def _run_apply(
        self, head: list[str], deltas: Sequence[Delta], counted: Sequence[ReservationKey]
    ) -> str:
        now = self._clock.now_ms()
        packed = orjson.dumps([self._delta_args(d, now) for d in deltas])
        argv: list[Any] = [*head, len(deltas), len(counted), now, self._counted_ttl_ms, packed]
        for r in counted:
            argv.extend((self._keys.reservations(r.tenant_id, r.customer, r.meter), r.event_id))
        keys = [self._keys.ready, self._keys.rebuild, self._keys.watermarks]
        out = self._apply(keys=keys, args=argv)
        return out.decode() if isinstance(out, bytes) else str(out)

    def _delta_args(self, d: Delta, now_ms: int) -> list[str]:
        """One delta as the APPLY script reads it (see `scripts.APPLY`); all strings, so Lua
        sees exactly the text Redis stores (a JSON number would become a Lua double)."""
        series = self._keys.series(d.tenant_id, d.customer, d.meter)
        zkey, mkey = self._keys.minute_keys(series, d.minute_ms)
        minute_exp = minute_expiry_s(d.minute_ms, self._minute_grace)
        return [
            AGG_CODE[d.aggregation],
            self._keys.month_key(series, d.minute_ms),
            day_field(d.minute_ms),
            hour_field(d.minute_ms),
            zkey,
            mkey,
            str(d.minute_ms),
            repr(float(d.value)),
            str(d.latest_ms),
            str(month_expiry_s(d.minute_ms, self._month_grace)),
            str(minute_exp) if minute_exp * 1000 > now_ms else "0",
        ]

    def usage(
        self,
        tenant_id: int,
        customer: str,
        meter: str,
        aggregation: Aggregation,
        start_ms: int,
        end_ms: int,
    ) -> float:
        spec = self._period_spec(tenant_id, customer, meter, start_ms, end_ms)
        return float(self._usage(args=[AGG_CODE[aggregation], *spec]))

    def _period_spec(
        self, tenant_id: int, customer: str, meter: str, start_ms: int, end_ms: int
    ) -> list[Any]:
        series = self._keys.series(tenant_id, customer, meter)
        by_key: dict[str, list[str]] = {}
        for span in cover(start_ms, end_ms):
            by_key.setdefault(self._keys.month_key(series, span.start_ms), []).append(
                span_field(span)
            )
        spec: list[Any] = [len(by_key)]
        for key, fields in by_key.items():
            spec.extend((key, len(fields), *fields))
        return spec

    def recent(
        self,
        tenant_id: int,
        customer: str,
        meter: str,
        aggregation: Aggregation,
        minutes: int,
        now_ms: int,
    ) -> float:
        if minutes <= 0:
            return 0.0
        hi = floor_to(now_ms, MINUTE_MS)
        lo = hi - (minutes - 1) * MINUTE_MS
        series = self._keys.series(tenant_id, customer, meter)
        keys: list[str] = []
        for day in range(floor_to(lo, DAY_MS), hi + 1, DAY_MS):
            keys.extend(self._keys.minute_keys(series, day))
        return float(self._recent(keys=keys, args=[AGG_CODE[aggregation], lo, hi]))

    def reserve(
        self,
        tenant_id: int,
        customer: str,
        meter: str,
        event_id: str,
        amount: float,
        limit: float | None,
        start_ms: int,
        end_ms: int,
        at_ms: int,
    ) -> Reservation:
        rkey = self._keys.reservations(tenant_id, customer, meter)
        spec = self._period_spec(tenant_id, customer, meter, start_ms, end_ms)
        lo, hi = floor_to(start_ms, 3_600_000), floor_to(end_ms, 3_600_000)
        limit_arg = "" if limit is None else repr(float(limit))
        now = self._clock.now_ms()
        args = [event_id, repr(float(amount)), limit_arg, now, at_ms, lo, hi, *spec]
        granted, used, pending = self._reserve(keys=[rkey, rkey + ":c"], args=args)
        return Reservation(bool(int(granted)), float(used), float(pending))

    def release(self, tenant_id: int, customer: str, meter: str, event_id: str) -> None:
        self._r.hdel(self._keys.reservations(tenant_id, customer, meter), event_id)

    def watermarks(self) -> dict[str, int] | None:
        pipe = self._r.pipeline(transaction=True)
        pipe.exists(self._keys.ready)
        pipe.exists(self._keys.rebuild)
        pipe.hgetall(self._keys.watermarks)
        ready, flagged, marks = pipe.execute()
        if not ready or flagged:
            return None
        return {k.decode(): int(v) for k, v in marks.items()}

    def begin_rebuild(self, ttl_s: int) -> str | None:
        token = secrets.token_hex(8)
        if not self._r.set(self._keys.rebuild, token, nx=True, ex=ttl_s):
            return None
        self._r.delete(self._keys.ready, self._keys.watermarks)
        for chunk in _chunks(self._r.scan_iter(match=self._keys.view_pattern, count=1000), 500):
            self._r.unlink(*chunk)
        return token

    def extend_rebuild(self, token: str, ttl_s: int) -> bool:
        if self._r.get(self._keys.rebuild) != token.encode():
            return False
        return bool(self._r.expire(self._keys.rebuild, ttl_s))

    def load(self, token: str, deltas: Sequence[Delta]) -> None:
        for start in range(0, len(deltas), 2000):
            out = self._run_apply(["load", token, "", "0"], deltas[start : start + 2000], [])
            if out != "applied":
                raise RuntimeError(f"rebuild lost its flag while loading ({out})")

    def finish_rebuild(self, token: str, watermarks: Mapping[str, int]) -> bool:
        keys = [self._keys.rebuild, self._keys.ready, self._keys.watermarks]
        flat = [x for kv in watermarks.items() for x in kv]
        return bool(self._finish(keys=keys, args=[token, *flat]))

    def pending_reservations(self) -> list[ReservationKey]:
        found: list[ReservationKey] = []
        prefix = self._keys.prefix
        for raw in self._r.scan_iter(match=self._keys.reservation_pattern, count=1000):
            parsed = parse_reservation_key(prefix, _text(raw))
            if parsed is None:
                continue
            for event_id in self._r.hkeys(raw):
                found.append(ReservationKey(*parsed, _text(event_id)))
        return found

    def held_ids(self, tenant_id: int, customer: str, meter: str) -> set[str]:
        rkey = self._keys.reservations(tenant_id, customer, meter)
        return {_text(k) for k in self._r.hkeys(rkey)}

    def restore_reservations(self, pending: Sequence[PendingReservation]) -> None:
        pipe = self._r.pipeline(transaction=False)
        for p in pending:
            k = p.key
            rkey = self._keys.reservations(k.tenant_id, k.customer, k.meter)
            pipe.hsetnx(rkey, k.event_id, f"{float(p.amount)!r}|{p.at_ms}")
        pipe.execute()

    def remove_reservations(self, keys: Sequence[ReservationKey]) -> None:
        pipe = self._r.pipeline(transaction=False)
        for k in keys:
            pipe.hdel(self._keys.reservations(k.tenant_id, k.customer, k.meter), k.event_id)
        pipe.execute()


def _chunks(items: Iterator[bytes], size: int) -> Iterator[list[bytes]]:
    chunk: list[bytes] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _text(raw: bytes | str) -> str:
    return raw.decode() if isinstance(raw, bytes) else raw
