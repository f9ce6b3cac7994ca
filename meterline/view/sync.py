"""Keeping a view in step with Postgres: watermark-gated applies and exclusive rebuilds.

The aggregator applies each committed batch with `apply_gated`, which carries the batch's place
in its partition. The view keeps, per partition stream, the next offset its content covers
(the watermark) and applies a batch only if it starts exactly there:

- `APPLIED`: it did, and moved the watermark to the batch's next offset;
- `SKIPPED`: the watermark is already past the batch (a rebuild included it); nothing added;
- `GAP`: a batch before this one is missing (a crash between commit and apply): rebuild;
- `EMPTY`: the view lost its content (flushed, restarted): rebuild;
- `REBUILDING`: a rebuild is running; apply again when it ends (the gate then decides).

A rebuild sets an exclusive flag (applies are refused), drops the view's content, loads the
rollups and watermarks read from ONE Postgres snapshot, then marks the view ready. Every
committed batch is therefore counted exactly once: inside the snapshot, or applied after it.
"""

from __future__ import annotations

import abc
import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal

from meterline.view.model import Delta, ReservationKey, UsageView


@dataclass(frozen=True, slots=True)
class Gate:
    """A batch's place in its partition: `prev_offset` is the offset Postgres held before the
    batch (`None` if the partition had no row), `next_offset` the one the batch stored."""

    stream: str
    prev_offset: int | None
    next_offset: int


@dataclass(frozen=True, slots=True)
class PendingReservation:
    """A granted consume whose event is not counted yet, as Postgres records it."""

    key: ReservationKey
    amount: Decimal
    at_ms: int


def stream_name(group: str, topic: str, partition: int, incarnation: str | None = None) -> str:
    """A partition's stream; one per incarnation of the topic, so a topic that starts again
    from offset 0 is not gated by the watermark of the log it replaced."""
    base = f"{group}|{topic}|{partition}"
    return base if incarnation is None else f"{base}|{incarnation}"


class ApplyOutcome(enum.StrEnum):
    APPLIED = "applied"
    SKIPPED = "skipped"
    GAP = "gap"
    EMPTY = "empty"
    REBUILDING = "rebuilding"


class SyncedView(UsageView):
    """A `UsageView` that can be gated by watermarks and rebuilt."""

    @abc.abstractmethod
    def apply_gated(
        self, gate: Gate, deltas: Sequence[Delta], counted: Sequence[ReservationKey]
    ) -> ApplyOutcome:
        """Apply a committed batch if the view's watermark of `gate.stream` is where it starts."""

    @abc.abstractmethod
    def watermarks(self) -> dict[str, int] | None:
        """Every stream's watermark, or `None` when the view is not ready (empty, rebuilding)."""

    @abc.abstractmethod
    def begin_rebuild(self, ttl_s: int) -> str | None:
        """Take the rebuild flag and drop the view's content (reservations are kept); returns
        a token, or `None` when another rebuild holds the flag. The flag lapses after `ttl_s`
        unless `extend_rebuild` renews it, so a crashed rebuilder does not block the view."""

    @abc.abstractmethod
    def extend_rebuild(self, token: str, ttl_s: int) -> bool:
        """Renew the flag; `False` if the token no longer holds it."""

    @abc.abstractmethod
    def load(self, token: str, deltas: Sequence[Delta]) -> None:
        """Add deltas during a rebuild (ignores watermarks; refused without the flag)."""

    @abc.abstractmethod
    def finish_rebuild(self, token: str, watermarks: Mapping[str, int]) -> bool:
        """Store the watermarks, mark the view ready and drop the flag, atomically; `False` if
        the token lost the flag (the rebuild must start again)."""

    @abc.abstractmethod
    def pending_reservations(self) -> list[ReservationKey]:
        """Every pending reservation (for the rebuild to drop those already counted)."""

    @abc.abstractmethod
    def held_ids(self, tenant_id: int, customer: str, meter: str) -> set[str]:
        """The event ids of one (customer, meter)'s pending reservations."""

    @abc.abstractmethod
    def restore_reservations(self, pending: Sequence[PendingReservation]) -> None:
        """Hold each of these reservations unless one is held under its event id already
        (a rebuild restoring what Postgres records after Redis lost it)."""

    @abc.abstractmethod
    def remove_reservations(self, keys: Sequence[ReservationKey]) -> None:
        """Drop these pending reservations (their events are counted in Postgres)."""
