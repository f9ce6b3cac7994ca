"""One Postgres transaction per batch: ledger rows, minute rollups and offsets, all or nothing.

0. (`prepare`, on the consumer thread while the transaction before it is in flight) the
   batch's first copy of each event is picked and written as COPY text;
1. (outside the transaction) the ledger's day partitions the batch needs are created;
2. the batch's first copy of each event is COPYed into a temp table; its identity (tenant, id)
   goes into `usage_event_ids`, the one unique key, and its row into the day-partitioned
   ledger, in one plain `INSERT` inside a savepoint: the usual batch holds no event counted
   before, and a plain insert costs a third less than `ON CONFLICT`. When one was counted
   (a redelivery after a crash, a duplicate from beyond ingest's dedupe window, a retry with
   a new time), the savepoint is rolled back and `INSERT ... ON CONFLICT DO NOTHING RETURNING`
   on the ids says which are new, and only those get a ledger row;
3. only the new events are folded into deltas and upserted into `usage_rollups_minute`
   (again COPY to a temp table, then one upsert per aggregation present);
4. each partition's stored offset moves from where this consumer's position says it is to the
   batch's end; if the stored offset is anywhere else, another consumer owns the partition
   (this one is a zombie) and the transaction aborts with `Fenced`;
5. the batch's dead letters are recorded in `dead_letter_outbox` (published after the commit)
   and announced to webhooks (`dlq.event_dead_lettered`, `meterline.notify`).

Stored offsets belong to one incarnation of the topic (`LedgerWriter.incarnation`, see
`meterline.kafka.admin.topic_incarnation`): a row of another incarnation is no position at all
(`None`, read from the beginning), and the first batch of the new incarnation claims the row.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import psycopg

from aggregator.batch import AggregationOf, Batch, to_deltas, unique_events
from aggregator.decoding import EventKey, Events
from meterline.catalog.aggregation import RULES, Combine
from meterline.catalog.model import Aggregation
from meterline.kafka.dlq import DeadLetter
from meterline.notify.announce import dead_lettered
from meterline.notify.outbox import publish
from meterline.postgres.partitions import PartitionManager
from meterline.view.model import DAY_MS, Delta

_EPOCH = date(1970, 1, 1)

_SETUP = """
CREATE TEMP TABLE IF NOT EXISTS batch_events (
    tenant_id bigint, event_id text, day integer, customer text, meter text,
    ts_ms bigint, value numeric, received_ms bigint
) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE IF NOT EXISTS batch_rollups (
    agg "char", tenant_id bigint, customer text, meter text, minute_ms bigint,
    value numeric, count bigint, latest_ms bigint
) ON COMMIT DELETE ROWS;
"""

# The ids go first, into `usage_event_ids` (the one unique key); the ledger rows follow in the
# same statement, for every event or (`_INSERT_NEW`) for those whose id was new.
_IDS = """
INSERT INTO usage_event_ids (tenant_id, event_id, day)
SELECT tenant_id, event_id, DATE '1970-01-01' + day FROM batch_events
"""
_LEDGER = """
INSERT INTO usage_events (tenant_id, event_id, day, customer, meter, ts, value, received_at)
SELECT b.tenant_id, b.event_id, DATE '1970-01-01' + b.day, b.customer, b.meter,
       to_timestamp(b.ts_ms::float8 / 1000), b.value, to_timestamp(b.received_ms::float8 / 1000)
FROM batch_events b
"""
_INSERT_ALL = f"WITH ids AS ({_IDS}) {_LEDGER}"
_INSERT_NEW = (
    f"WITH new AS ({_IDS} ON CONFLICT DO NOTHING RETURNING tenant_id, event_id) {_LEDGER}"
    "JOIN new USING (tenant_id, event_id) RETURNING tenant_id, event_id"
)

_UPSERT = """
INSERT INTO usage_rollups_minute AS r (tenant_id, customer, meter, bucket, value, count, latest_ts)
SELECT tenant_id, customer, meter, to_timestamp(minute_ms / 1000.0), value, count,
       to_timestamp(latest_ms / 1000.0)
FROM batch_rollups WHERE agg = %s
ON CONFLICT (tenant_id, customer, meter, bucket) DO UPDATE SET {merge}
"""
_MERGE = {
    "a": "value = r.value + EXCLUDED.value, count = r.count + EXCLUDED.count, "
    "latest_ts = GREATEST(r.latest_ts, EXCLUDED.latest_ts)",
    "m": "value = GREATEST(r.value, EXCLUDED.value), count = r.count + EXCLUDED.count, "
    "latest_ts = GREATEST(r.latest_ts, EXCLUDED.latest_ts)",
    "l": "value = CASE WHEN (EXCLUDED.latest_ts, EXCLUDED.value) > (r.latest_ts, r.value) "
    "THEN EXCLUDED.value ELSE r.value END, count = r.count + EXCLUDED.count, "
    "latest_ts = GREATEST(r.latest_ts, EXCLUDED.latest_ts)",
}
_CODE: dict[Aggregation, str] = {
    aggregation: {Combine.ADD: "a", Combine.MAX: "m", Combine.LATEST: "l"}[rule.over_time]
    for aggregation, rule in RULES.items()
}
"""The `_MERGE` of each aggregation, by how it combines over time."""

_ADVANCE = """
UPDATE consumer_offsets SET next_offset = %s, updated_at = now()
WHERE consumer_group = %s AND topic = %s AND partition = %s AND next_offset = %s
  AND incarnation IS NOT DISTINCT FROM %s
"""
_CLAIM = """
INSERT INTO consumer_offsets (consumer_group, topic, partition, next_offset, incarnation)
VALUES (%s, %s, %s, %s, %s)
ON CONFLICT (consumer_group, topic, partition) DO UPDATE
SET next_offset = EXCLUDED.next_offset, incarnation = EXCLUDED.incarnation, updated_at = now()
WHERE consumer_offsets.incarnation IS DISTINCT FROM EXCLUDED.incarnation
"""
_POSITIONS = """
SELECT partition, next_offset FROM consumer_offsets
WHERE consumer_group = %s AND topic = %s AND partition = ANY(%s)
  AND incarnation IS NOT DISTINCT FROM %s
"""
_RECORD_LETTER = """
INSERT INTO dead_letter_outbox
    (consumer_group, topic, incarnation, partition, source_offset, key, value, reason)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING
"""
_PENDING_LETTERS = """
SELECT key, value, reason, partition, source_offset FROM dead_letter_outbox
WHERE consumer_group = %s AND topic = %s AND incarnation = %s
ORDER BY partition, source_offset
"""
_FORGET_LETTERS = """
DELETE FROM dead_letter_outbox
WHERE consumer_group = %s AND topic = %s AND incarnation = %s
  AND (partition, source_offset) IN (SELECT * FROM unnest(%s::integer[], %s::bigint[]))
"""


_COPY_EVENTS = (
    "COPY batch_events (tenant_id, event_id, day, customer, meter, ts_ms, value, received_ms) "
    "FROM STDIN"
)
_COPY_ROLLUPS = (
    "COPY batch_rollups (agg, tenant_id, customer, meter, minute_ms, value, count, latest_ms) "
    "FROM STDIN"
)
_COLUMNS = 8  # of both


def copy_block(events: Events) -> str | None:
    """The events as rows of COPY's text format (columns of `_COPY_EVENTS`), or `None` when a
    text field holds a character COPY would need escaped (backslash, tab, newline, carriage
    return): the caller then writes row by row and psycopg escapes. Such ids are rare; checking
    the joined block is much cheaper than checking every field: a clean block has exactly
    seven tabs and one newline per row, and no backslash or carriage return."""
    block = "".join(
        [
            f"{t}\t{i}\t{ts // DAY_MS}\t{c}\t{m}\t{ts}\t{v!r}\t{r}\n"
            for t, i, c, m, v, ts, r in _fields(events)
        ]
    )
    return block if _clean(block, len(events)) else None


def rollup_block(deltas: Sequence[Delta]) -> str | None:
    """The deltas as rows of COPY's text format (columns of `_COPY_ROLLUPS`), or `None` when a
    customer or meter needs escaping (see `copy_block`)."""
    block = "".join(
        [
            f"{_CODE[d.aggregation]}\t{d.tenant_id}\t{d.customer}\t{d.meter}\t{d.minute_ms}\t"
            f"{d.value}\t{d.count}\t{d.latest_ms}\n"
            for d in deltas
        ]
    )
    return block if _clean(block, len(deltas)) else None


def _clean(block: str, rows: int) -> bool:
    """True when `block` is `rows` rows of `_COLUMNS` fields, none of which needs escaping."""
    return (
        block.count("\t") == (_COLUMNS - 1) * rows
        and block.count("\n") == rows
        and "\\" not in block
        and "\r" not in block
    )


def _rollup_row(d: Delta) -> tuple[object, ...]:
    code = _CODE[d.aggregation]
    return (
        code,
        d.tenant_id,
        d.customer,
        d.meter,
        d.minute_ms,
        str(d.value),
        d.count,
        d.latest_ms,
    )


def _ledger_rows(events: Events) -> list[tuple[object, ...]]:
    return [(t, i, ts // DAY_MS, c, m, ts, repr(v), r) for t, i, c, m, v, ts, r in _fields(events)]


def _fields(events: Events) -> Iterator[tuple[int, str, str, str, float, int, int]]:
    """Each event's (tenant, id, customer, meter, value, time, received time)."""
    return zip(
        events.tenant,
        events.id,
        events.customer,
        events.meter,
        events.value,
        events.ts_ms,
        events.received_ms,
        strict=True,
    )


@dataclass(frozen=True)
class Prepared:
    """A batch made ready for its transaction: the batch's first copy of each identity
    (tenant, id) per partition, and their rows as COPY text (`None` for a partition whose text
    would need escaping: it is written row by row)."""

    batch: Batch
    unique: dict[int, Events]
    blocks: dict[int, str | None]


def prepare(batch: Batch) -> Prepared:
    """The pure part of a batch's ledger write. The worker runs it on the consumer thread,
    which would otherwise wait for the committer: the committer's own work is the pipeline's
    slower stage, and this is most of its Python."""
    unique = unique_events(batch.events)
    return Prepared(batch, unique, {p: copy_block(es) for p, es in unique.items() if len(es)})


def _only_new(unique: dict[int, Events], fresh: set[EventKey]) -> dict[int, Events]:
    return {p: es.select(k in fresh for k in es.identities()) for p, es in unique.items()}


class Fenced(RuntimeError):
    """A stored offset is not where this consumer's position says: another consumer owns the
    partition. The batch was not written."""


@dataclass(frozen=True)
class Committed:
    """What a committed batch counted: new events per partition, and each partition's offset
    before the batch (`None` when the partition had no row)."""

    new_events: dict[int, Events]
    deltas: dict[int, list[Delta]]
    previous: dict[int, int | None]
    ends: dict[int, int]
    duplicates: int
    incarnation: str | None = None


Hook = Callable[[], None]


Connect = Callable[[], "psycopg.Connection[Any]"]


class LedgerWriter:
    """Writes batches through one dedicated connection, opened on first use and again after
    `reset()` (call it after a connection error). Not thread-safe.

    `incarnation` is the topic's incarnation the positions belong to; set it before reading
    positions (`None` only where the broker is never asked, as in some tests)."""

    def __init__(self, connect: Connect, group: str, topic: str) -> None:
        self._connect = connect
        self._conn_or_none: psycopg.Connection[Any] | None = None
        self._group, self._topic = group, topic
        self.incarnation: str | None = None
        self._partitions = PartitionManager()

    @property
    def _conn(self) -> psycopg.Connection[Any]:
        if self._conn_or_none is None:
            conn = self._connect()
            conn.autocommit = True
            conn.execute(_SETUP)
            self._conn_or_none = conn
        return self._conn_or_none

    def reset(self) -> None:
        conn, self._conn_or_none = self._conn_or_none, None
        if conn is not None:
            conn.close()

    def positions(self, partitions: list[int]) -> dict[int, int | None]:
        """The stored next offset of each partition in this incarnation (`None` for a partition
        with no row, or whose row belongs to another incarnation: read it from its start)."""
        args = (self._group, self._topic, partitions, self.incarnation)
        stored = dict(self._conn.execute(_POSITIONS, args).fetchall())
        return {p: stored.get(p) for p in partitions}

    def pending_letters(self) -> list[DeadLetter]:
        """Dead letters of this incarnation recorded by committed batches and not yet
        published (those of a batch whose process died before it published them)."""
        args = (self._group, self._topic, self.incarnation or "")
        rows = self._conn.execute(_PENDING_LETTERS, args).fetchall()
        return [DeadLetter(k, v, r, self._topic, p, o) for k, v, r, p, o in rows]

    def forget_letters(self, letters: Sequence[DeadLetter]) -> None:
        """Drop published letters from the outbox."""
        parts = [x.source_partition for x in letters]
        offsets = [x.source_offset for x in letters]
        args = (self._group, self._topic, self.incarnation or "", parts, offsets)
        self._conn.execute(_FORGET_LETTERS, args)

    def commit(
        self,
        prepared: Prepared,
        positions: Mapping[int, int | None],
        aggregation_of: AggregationOf,
        inside: Hook | None = None,
    ) -> Committed:
        """Write the batch and advance the offsets of its partitions from `positions`.

        Raises `Fenced` (nothing written) or a psycopg error (nothing written; retry).
        `inside` runs inside the transaction just before it commits (a test hook)."""
        batch, unique = prepared.batch, prepared.unique
        days = set().union(*(es.days() for es in unique.values()))
        self._partitions.ensure(self._conn, {_EPOCH + timedelta(days=d) for d in days})
        with self._conn.transaction():
            fresh = self._insert_events(prepared)
            new = unique if fresh is None else _only_new(unique, fresh)
            deltas = {p: to_deltas(es, aggregation_of) for p, es in new.items()}
            self._upsert([d for ds in deltas.values() for d in ds])
            previous = self._advance(batch, positions)
            self._record_letters(batch.poison)
            if inside is not None:
                inside()
        counted = sum(len(es) for es in new.values())
        total = sum(len(es) for es in batch.events.values())
        ends = dict(batch.ends)
        return Committed(new, deltas, previous, ends, total - counted, self.incarnation)

    def _insert_events(self, prepared: Prepared) -> set[EventKey] | None:
        """Insert the events whose identity was never counted: the identities of those
        inserted, or `None` when every one of them was new (the usual case: nothing is
        fetched). Their ids go to `usage_event_ids`, their rows to the ledger."""
        count = sum(map(len, prepared.unique.values()))
        if not count:
            return None
        with self._conn.cursor() as cur:
            with cur.copy(_COPY_EVENTS) as copy:
                for p, block in prepared.blocks.items():
                    if block is not None:
                        copy.write(block)
                    else:
                        for row in _ledger_rows(prepared.unique[p]):
                            copy.write_row(row)
            try:
                with self._conn.transaction():  # a savepoint
                    cur.execute(_INSERT_ALL)
                return None
            except psycopg.errors.UniqueViolation:
                pass  # some were counted before: find which are new
            cur.execute(_INSERT_NEW)
            if cur.rowcount == count:
                return None
            return {(t, i) for t, i in cur.fetchall()}

    def _upsert(self, deltas: list[Delta]) -> None:
        if not deltas:
            return
        with self._conn.cursor() as cur:
            with cur.copy(_COPY_ROLLUPS) as copy:
                block = rollup_block(deltas)
                if block is not None:
                    copy.write(block)
                else:
                    for d in deltas:
                        copy.write_row(_rollup_row(d))
            for code in sorted({_CODE[d.aggregation] for d in deltas}):
                cur.execute(_UPSERT.format(merge=_MERGE[code]), (code,))

    def _advance(self, batch: Batch, positions: Mapping[int, int | None]) -> dict[int, int | None]:
        previous: dict[int, int | None] = {}
        group, topic, inc = self._group, self._topic, self.incarnation
        for p in batch.partitions:
            start, end = positions.get(p), batch.ends[p]
            if start is not None:
                cur = self._conn.execute(_ADVANCE, (end, group, topic, p, start, inc))
            else:
                cur = self._conn.execute(_CLAIM, (group, topic, p, end, inc))
            if cur.rowcount != 1:
                raise Fenced(f"partition {p}: stored offset is not {start}; not the owner")
            previous[p] = start
        return previous

    def _record_letters(self, letters: Sequence[DeadLetter]) -> None:
        if not letters:
            return
        head = (self._group, self._topic, self.incarnation or "")
        with self._conn.cursor() as cur:
            cur.executemany(
                _RECORD_LETTER,
                [
                    (*head, x.source_partition, x.source_offset, x.key, x.value, x.reason)
                    for x in letters
                ],
            )
        for x in letters:  # announced to webhooks in the same transaction
            found = dead_lettered(x.key, x.value, x.reason, self._topic, head[2],
                                  x.source_partition, x.source_offset)  # fmt: skip
            if found is not None:
                publish(self._conn, found)
