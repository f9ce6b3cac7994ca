"""The aggregator's stored positions in Postgres (`consumer_offsets`), for operators.

Each row is a partition's next offset to read in one incarnation of the topic (see
`meterline.kafka.admin.TopicIncarnation`). The aggregator stops a partition whose stored
position and log disagree; `set_position` is how an operator moves it, and a running aggregator
resumes the partition from there within seconds. The ledger dedupes by event id, so moving a
position back reads events again without counting them twice; moving it forward skips events
for good.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from psycopg_pool import ConnectionPool

_LIST = """
SELECT partition, next_offset, incarnation, updated_at FROM consumer_offsets
WHERE consumer_group = %s AND topic = %s ORDER BY partition
"""
_SET = """
INSERT INTO consumer_offsets (consumer_group, topic, partition, next_offset, incarnation)
VALUES (%s, %s, %s, %s, %s)
ON CONFLICT (consumer_group, topic, partition) DO UPDATE
SET next_offset = EXCLUDED.next_offset, incarnation = EXCLUDED.incarnation, updated_at = now()
"""


@dataclass(frozen=True, slots=True)
class StoredPosition:
    partition: int
    next_offset: int
    incarnation: str | None
    updated_at: Any


def stored_positions(pool: ConnectionPool[Any], group: str, topic: str) -> list[StoredPosition]:
    """Every stored position of `group` on `topic`, by partition."""
    with pool.connection() as conn:
        rows = conn.execute(_LIST, (group, topic)).fetchall()
    return [StoredPosition(*row) for row in rows]


def set_position(
    pool: ConnectionPool[Any],
    group: str,
    topic: str,
    partition: int,
    offset: int,
    incarnation: str,
) -> None:
    """Store `offset` as the partition's next offset in `incarnation` (the topic's current one)."""
    with pool.connection() as conn:
        conn.execute(_SET, (group, topic, partition, offset, incarnation))
