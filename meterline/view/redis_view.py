"""`RedisUsageView`: the view in Redis 6.2, every multi-key step one Lua script (EVALSHA).

A batch's deltas go in one script call, however many customers it touches: one round trip per
batch, with the deltas packed into one JSON argument (redis-py encodes each argument separately,
which cost more than the script itself at thousands of arguments per batch). Reads of a period
fetch at most one field per month, day, hour or edge minute of the period
(`meterline.view.model.cover`), so a calendar month is one field and any period a few hundred.

Parts of a period older than the view's keys (`keys.Horizon`: months of a yearly period, the
first minutes of a period that started days ago) come from the archive (Postgres rollups), read
once and cached in process with the series' epoch; the script folds them in only while the
epoch is unchanged, and every late delta into those parts moves the epoch. Reservations are for
additive meters (sum, count): their usage is summed.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator, Mapping, Sequence
from contextlib import suppress
from decimal import Decimal
from typing import Any

import orjson
import redis
from redis.exceptions import NoScriptError

from meterline.catalog.aggregation import RULES, Combine
from meterline.catalog.model import Aggregation
from meterline.clock import Clock, SystemClock
from meterline.ttlmap import TtlMap
from meterline.values import from_micros, micros
from meterline.view import scripts
from meterline.view.keys import (
    Horizon,
    KeyLayout,
    day_field,
    hour_field,
    minute_expiry_s,
    month_expiry_s,
    parse_reservation_key,
    period_layout,
)
from meterline.view.model import (
    DAY_MS,
    HELD,
    MINUTE_MS,
    Archive,
    Delta,
    IdGuard,
    IdHeld,
    Reservation,
    ReservationKey,
    ReserveAsk,
    ViewNotReady,
    attributed_ms,
    floor_to,
    minute_range,
)
from meterline.view.sync import ApplyOutcome, Gate, PendingReservation, SyncedView
from meterline.view.touched import members

AGG_CODE: dict[Aggregation, str] = {
    aggregation: {Combine.ADD: "s", Combine.MAX: "m", Combine.LATEST: "l"}[rule.over_time]
    for aggregation, rule in RULES.items()
}
"""How each aggregation combines over time (`RULES`), as the scripts name it."""
ARCHIVE_CACHE_S = 600.0
_ATTEMPTS = 3
Archived = tuple[str, str, str]  # (epoch, value, latest_ms) as the scripts read them


class RedisUsageView(SyncedView):
    """The view in Redis under key prefix `prefix` (see `meterline.view.keys` for the layout).

    `client` is a redis-py client from `meterline.redis.connect`; `archive` answers the parts
    of a period older than the view's keys (a `meterline.usage.UsageStore`); without one, reads
    that need it raise `ViewNotReady`. Raises `redis.RedisError` when Redis does not answer;
    callers that must not lose work retry.
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
        archive: Archive | None = None,
        touched: bool = False,
    ) -> None:
        self._r = client
        self._archive = archive
        self._archived: TtlMap[tuple[Any, ...], Archived] = TtlMap(ARCHIVE_CACHE_S)
        self._keys = KeyLayout(prefix)
        self._clock = clock or SystemClock()
        self._month_grace = month_grace_days
        self._minute_grace = minute_grace_days
        self._counted_ttl_ms = counted_ttl_s * 1000
        self._touched = touched  # the batch's customers marked for threshold detection
        self._apply_keys = [self._keys.ready, self._keys.rebuild, self._keys.watermarks]
        if touched:
            self._apply_keys += [self._keys.touched, self._keys.touched_seq]
        self._apply = client.register_script(scripts.APPLY)
        self._usage = client.register_script(scripts.USAGE)
        self._reserve = client.register_script(scripts.RESERVE)
        self._recent = client.register_script(scripts.RECENT)
        self._finish = client.register_script(scripts.FINISH_REBUILD)
        self._guards: dict[str, Any] = {}

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
        settled = self._horizon(now).minutes_ms
        packed = orjson.dumps([self._delta_args(d, now, settled) for d in deltas])
        argv: list[Any] = [*head, len(deltas), len(counted), now, self._counted_ttl_ms, packed]
        argv.append(self._touched_arg(deltas))
        for r in counted:
            argv.extend((self._keys.reservations(r.tenant_id, r.customer, r.meter), r.event_id))
        out = self._apply(keys=self._apply_keys, args=argv)
        return out.decode() if isinstance(out, bytes) else str(out)

    def _touched_arg(self, deltas: Sequence[Delta]) -> bytes:
        if not self._touched or not deltas:
            return b""
        return orjson.dumps(members((d.tenant_id, d.customer) for d in deltas))

    def _delta_args(self, d: Delta, now_ms: int, settled_before: int) -> list[str]:
        """One delta as the APPLY script reads it (see `scripts.APPLY`); all strings, so Lua
        sees exactly the text Redis stores (a JSON number would become a Lua double). A delta
        before `settled_before` falls where readers use the archive: it moves the epoch."""
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
            _units(d.value),
            str(d.latest_ms),
            str(month_expiry_s(d.minute_ms, self._month_grace)),
            str(minute_exp) if minute_exp * 1000 > now_ms else "0",
            self._keys.epoch_key(series) if d.minute_ms < settled_before else "",
        ]

    def _horizon(self, now_ms: int) -> Horizon:
        return Horizon.at(now_ms, self._month_grace, self._minute_grace)

    def usage(
        self,
        tenant_id: int,
        customer: str,
        meter: str,
        aggregation: Aggregation,
        start_ms: int,
        end_ms: int,
    ) -> Decimal:
        series = (tenant_id, customer, meter)
        spec, ranges = self._period_plan(series, start_ms, end_ms)
        epoch_key = self._keys.epoch_key(self._keys.series(*series))
        for _ in range(_ATTEMPTS):
            epoch, base, base_ts = self._archive_part(series, aggregation, ranges)
            args = [AGG_CODE[aggregation], epoch, base, base_ts, *spec]
            out = self._usage(keys=[epoch_key], args=args)
            if not isinstance(out, list):
                return _quantity(out)
            self._forget(series, aggregation, ranges)
        raise ViewNotReady(why="late events keep arriving in this period's archived part")

    def _period_plan(
        self, series: tuple[int, str, str], start_ms: int, end_ms: int
    ) -> tuple[list[Any], list[tuple[int, int]]]:
        """The script's usage spec of the spans the view holds, and the minute ranges of the
        spans it no longer holds, to be read from the archive (`keys.period_layout`)."""
        name = self._keys.series(*series)
        horizon = self._horizon(self._clock.now_ms())
        fields, ranges = period_layout(start_ms, end_ms, horizon)
        spec: list[Any] = [len(fields)]
        for suffix, names in fields:
            spec.extend((name + suffix, len(names), *names))
        return spec, list(ranges)

    def _archive_part(
        self, series: tuple[int, str, str], aggregation: Aggregation, ranges: list[tuple[int, int]]
    ) -> Archived:
        """(epoch, value, latest_ms) of the archived ranges; cached, since only a late event
        changes them and it moves the epoch the script checks. The epoch is read before the
        archive: a delta committed after that read moves it, so the script refuses the pair."""
        if not ranges:
            return "", "", ""
        cache_key = (*series, aggregation, tuple(ranges))
        hit = self._archived.get(cache_key)
        if hit is not None:
            return hit
        if self._archive is None:
            raise ViewNotReady(why="this period reaches past the view's keys and no archive is set")
        raw = self._r.get(self._keys.epoch_key(self._keys.series(*series)))
        epoch = "0" if raw is None else _text(raw)
        found = self._archive.fold_ranges(*series, aggregation, ranges)
        part = (epoch, "", "") if found is None else (epoch, _units(found[0]), str(found[1]))
        self._archived.put(cache_key, part)
        return part

    def _forget(
        self, series: tuple[int, str, str], aggregation: Aggregation, ranges: list[tuple[int, int]]
    ) -> None:
        self._archived.pop((*series, aggregation, tuple(ranges)))

    def recent(
        self,
        tenant_id: int,
        customer: str,
        meter: str,
        aggregation: Aggregation,
        minutes: int,
        now_ms: int,
    ) -> Decimal:
        if minutes <= 0:
            return Decimal(0)
        hi = floor_to(now_ms, MINUTE_MS)
        lo = hi - (minutes - 1) * MINUTE_MS
        series = self._keys.series(tenant_id, customer, meter)
        keys: list[str] = []
        for day in range(floor_to(lo, DAY_MS), hi + 1, DAY_MS):
            keys.extend(self._keys.minute_keys(series, day))
        return _quantity(self._recent(keys=keys, args=[AGG_CODE[aggregation], lo, hi]))

    def reserve_many(
        self, asks: Sequence[ReserveAsk], guard: IdGuard | None = None
    ) -> list[Reservation | IdHeld | Exception]:
        """Every ask's first attempt in one pipeline (EVALSHA of the loaded script: a pipeline
        running a `Script` would ask SCRIPT EXISTS first, a second round trip), each guarded in
        its own script when `guard` has a `script` (else the guard is asked first, one call).
        An ask whose attempt did not decide (the script not loaded yet, the archive moved, a
        Redis error) is asked again alone (the guard, then `reserve`); one the view is not
        ready for is ViewNotReady."""
        lua = guard.script() if guard is not None else None
        if guard is not None and lua is None:
            return super().reserve_many(asks, guard) if asks else []
        script = self._guarded(lua) if guard is not None and lua is not None else self._reserve
        pipe = self._r.pipeline(transaction=False)
        read = []
        for ask in asks:
            keys, args, ranges = self._reserve_call(ask, None)
            if guard is not None and lua is not None:
                keys.append(guard.head(ask.tenant_id))
            pipe.evalsha(script.sha, len(keys), *keys, *args)
            read.append(ranges)
        answers: list[Reservation | IdHeld | Exception] = []
        outs = pipe.execute(raise_on_error=False) if asks else []
        if script is not self._reserve and any(isinstance(o, NoScriptError) for o in outs):
            with suppress(redis.RedisError):
                self._r.script_load(script.script)  # for the next batch; this one goes alone
        for ask, ranges, out in zip(asks, read, outs, strict=True):
            code = None if isinstance(out, Exception) else int(out[0])
            if code == -3:
                answers.append(HELD)
            elif code == -1:
                answers.append(ViewNotReady(_quantity(out[2])))
            elif code is not None and code >= 0:
                at = attributed_ms(ask.at_ms, ask.start_ms, ask.end_ms)
                answers.append(Reservation(code == 1, _quantity(out[1]), _quantity(out[2]), at))
            else:
                if code is not None:
                    self._forget((ask.tenant_id, ask.customer, ask.meter), Aggregation.SUM, ranges)
                answers.extend(super().reserve_many([ask], guard))
        return answers

    def _guarded(self, lua: str) -> Any:
        """The RESERVE script guarded by `lua` (`IdGuard.script`), registered once per text."""
        found = self._guards.get(lua)
        if found is None:
            found = self._guards[lua] = self._r.register_script(scripts.guarded_reserve(lua))
        return found

    def _reserve_call(
        self, a: ReserveAsk, counted: Decimal | None
    ) -> tuple[list[Any], list[Any], list[tuple[int, int]]]:
        """The keys and arguments of one attempt of the RESERVE script, and the archived
        ranges it read (to forget when the script finds them stale)."""
        series = (a.tenant_id, a.customer, a.meter)
        rkey = self._keys.reservations(*series)
        keys = [rkey, rkey + ":c", self._keys.ready, self._keys.rebuild]
        keys.append(self._keys.epoch_key(self._keys.series(*series)))
        spec, ranges = self._period_plan(series, a.start_ms, a.end_ms)
        lo, hi = minute_range(a.start_ms, a.end_ms)
        limit_arg = "" if a.limit is None else "-" if a.limit < 0 else _units(a.limit)
        at = attributed_ms(a.at_ms, a.start_ms, a.end_ms)
        extra = "" if counted is None else _units(counted)
        head: list[Any] = [
            a.event_id,
            _units(a.amount),
            limit_arg,
            self._clock.now_ms(),
            at,
            lo,
            hi,
        ]
        epoch, base, _ts = self._archive_part(series, Aggregation.SUM, ranges)
        return keys, [*head, epoch, base, extra, *spec], ranges

    def reserve(
        self,
        tenant_id: int,
        customer: str,
        meter: str,
        event_id: str,
        amount: Decimal,
        limit: Decimal | None,
        start_ms: int,
        end_ms: int,
        at_ms: int,
        counted: Decimal | None = None,
    ) -> Reservation:
        series = (tenant_id, customer, meter)
        ask = ReserveAsk(*series, event_id, amount, limit, start_ms, end_ms, at_ms)
        for _ in range(_ATTEMPTS):
            keys, args, ranges = self._reserve_call(ask, counted)
            code, used, pending = self._reserve(keys=keys, args=args)
            if int(code) == -1:
                raise ViewNotReady(_quantity(pending))
            if int(code) >= 0:
                at = attributed_ms(at_ms, start_ms, end_ms)
                return Reservation(int(code) == 1, _quantity(used), _quantity(pending), at)
            self._forget(series, Aggregation.SUM, ranges)
        raise ViewNotReady(why="late events keep arriving in this period's archived part")

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
            pipe.hsetnx(rkey, k.event_id, f"{_units(p.amount)}|{p.at_ms}")
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


def _units(quantity: Decimal | float) -> str:
    """A quantity as the scripts hold it: whole millionths, as a digit string. A delta's value
    (`from_micros`: six places, written plainly) is read off its text, once per delta."""
    text = str(quantity)
    if len(text) > 7 and text[-7] == "." and isinstance(quantity, Decimal):
        return text.replace(".", "").lstrip("0") or "0"
    return str(micros(quantity))


def _quantity(raw: bytes | str) -> Decimal:
    """A quantity the scripts return (millionths as a digit string), exact."""
    return from_micros(int(raw))


def _text(raw: bytes | str) -> str:
    return raw.decode() if isinstance(raw, bytes) else raw
