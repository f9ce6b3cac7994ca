"""Published flags written in batches, off the consume's path.

A granted consume's answer is stored before its event is published, with `published` false,
and the flag is set once the broker acknowledged the event. Nothing waits on the flag: a retry
that finds it false publishes the same event again (same id and timestamp: the ledger drops the
copy), which is what a crash between the acknowledgement and the flag's write did already. So
the flags of acknowledged events are written in batches (one statement per tenant every
`interval_s`) instead of one round trip on each consume's path, and until written this process
reads them as set (`pending`). A failed write is logged and tried again at the next batch.
"""

from __future__ import annotations

import logging
import threading
from collections import defaultdict

from meterline.postgres import Pool, autocommitted

log = logging.getLogger(__name__)

INTERVAL_S = 0.02
_MARK = """
UPDATE entitlement_answers SET published = true
WHERE tenant_id = %s AND event_id = ANY(%s) AND published IS NOT TRUE
"""


class PublishedFlags:
    """Acknowledged event ids whose `published` flag is still to be written; a daemon thread
    (started by the first `add`) writes them every `interval_s`; `close` writes the rest."""

    def __init__(self, pool: Pool, interval_s: float = INTERVAL_S) -> None:
        self._pool = pool
        self._interval = interval_s
        self._lock = threading.Lock()
        self._unwritten: set[tuple[int, str]] = set()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def add(self, tenant_id: int, event_id: str) -> None:
        with self._lock:
            self._unwritten.add((tenant_id, event_id))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="published", daemon=True)
                self._thread.start()

    def pending(self, tenant_id: int, event_id: str) -> bool:
        """Whether `event_id` was acknowledged and its flag not written yet."""
        with self._lock:
            return (tenant_id, event_id) in self._unwritten

    def flush(self) -> None:
        """Write the flags added so far (each id stays pending until its write committed)."""
        with self._lock:
            batch = list(self._unwritten)
        if not batch:
            return
        by_tenant: dict[int, list[str]] = defaultdict(list)
        for tenant_id, event_id in batch:
            by_tenant[tenant_id].append(event_id)
        try:
            with autocommitted(self._pool) as conn:
                for tenant_id, ids in by_tenant.items():
                    conn.execute(_MARK, (tenant_id, ids), prepare=False)  # as answers.py
        except Exception:
            log.warning("published flags not written; tried again shortly", exc_info=True)
            return
        with self._lock:
            self._unwritten.difference_update(batch)

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        self.flush()

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            if self._pool.closed:  # closed without `close` first: nothing can be written now
                log.warning("%d published flags not written: the pool closed", len(self._unwritten))
                return
            self.flush()
