"""One active scheduler across reporter replicas, with failover.

Every replica serves the API; only the one holding the leadership runs the schedule (pushes,
period-end flushes, nightly reconciliation, context sync). Leadership is a session-level
Postgres advisory lock (`LEADER_KEY`) held on a connection of its own, outside the pool:

- a replica asks for it (`pg_try_advisory_lock`, never waiting) on every scheduler tick;
- the holder proves on every tick that its session is still alive (one `SELECT 1`) before it
  runs anything; if the session is gone, it stops scheduling at once and asks again;
- when the holder dies (SIGKILL, OOM, a node lost) its session ends, Postgres releases the
  lock, and the next tick of another replica takes it: a handover within one tick (15 s by
  default) of Postgres noticing. A dead process's socket is closed by its kernel, so Postgres
  notices at once; a vanished node is noticed through TCP keepalives (the connection asks for
  them: idle 10 s, then 3 probes 5 s apart).

Two schedulers may still overlap briefly (a holder cut off from Postgres finishes the job it is
running while another replica takes over), so every job stays idempotent on its own: pushes
take the push lock and the report ledger (deterministic identifiers, Idempotency-Keys), and
reconciliation runs may repeat.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from typing import Any

import psycopg
from psycopg.conninfo import make_conninfo

log = logging.getLogger("meterline.postgres.leadership")

LEADER_KEY = 7_301_002
"""The advisory lock of the scheduler's leadership (the push lock is 7_301_001)."""
KEEPALIVES = {"keepalives": 1, "keepalives_idle": 10, "keepalives_interval": 5}

Connect = Callable[[], "psycopg.Connection[Any]"]


def connector(url: str) -> Connect:
    """Connections for the leadership: autocommit, short connect timeout, TCP keepalives."""
    conninfo = make_conninfo(url, connect_timeout=5, keepalives_count=3, **KEEPALIVES)
    return lambda: psycopg.connect(conninfo, autocommit=True)


class Leadership:
    """Whether this replica leads the schedule; `__call__` asks, keeps or loses it. Used from
    the scheduler's thread only. `on_change(True|False)` is told of every gain and loss."""

    def __init__(
        self,
        connect: Connect,
        on_change: Callable[[bool], object] = bool,
        key: int = LEADER_KEY,
        name: str = "scheduler",
    ) -> None:
        """`key`: the advisory lock (another job that wants one active replica passes its
        own); `name` says whose leadership in the logs."""
        self._connect = connect
        self._key, self._name = key, name
        self._on_change = on_change
        self._conn: psycopg.Connection[Any] | None = None
        self._held = False

    def __call__(self) -> bool:
        """True when this replica holds the leadership now (taking it when it is free).
        Never raises: Postgres unreachable means not leading."""
        try:
            held = self._still_held() if self._held else self._try_take()
        except psycopg.Error as exc:
            log.warning(
                "%s leadership: Postgres unavailable", self._name, extra={"error": str(exc)}
            )
            self._drop()
            held = False
        self._set(held)
        return held

    def _still_held(self) -> bool:
        assert self._conn is not None
        self._conn.execute("SELECT 1")
        return True

    def _try_take(self) -> bool:
        if self._conn is None or self._conn.closed:
            self._conn = self._connect()
        row = self._conn.execute("SELECT pg_try_advisory_lock(%s)", (self._key,)).fetchone()
        return bool(row and row[0])

    def _set(self, held: bool) -> None:
        if held != self._held:
            log.info("%s leadership %s", self._name, "taken" if held else "lost")
            self._held = held
            self._on_change(held)

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(psycopg.Error):
                conn.close()

    def release(self) -> None:
        """Give the leadership up (closing the session releases the lock): at shutdown, so
        another replica takes over at its next tick."""
        self._drop()
        self._set(False)
