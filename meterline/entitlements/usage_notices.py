"""Thresholds reached by usage that no one checks: the detector of counted usage.

Consumes and plain checks announce what their answers show (`thresholds.py`), but a customer
whose usage arrives only through ingest, and whose app never checks, is decided by no one. So
the entitlements service also watches the view's feed of touched customers
(`meterline.view.touched`: the aggregator marks each batch's customers in the same Redis call
that adds the batch's usage) and decides, for each touched customer, every feature that can
announce something, recording the notices through the same `Notifier` and `NoticeLedger` as
consumes and checks: once per customer, feature, period and notice, whoever sees it first.

**Where it runs, and why there.** Not in the aggregator: a threshold is a fraction of the
effective limit (plan after payment policies, the billing period, grants at that instant),
which the entitlements service holds and caches and the aggregator would have to load per
customer of every batch, on the path whose target is 100k events/s. The aggregator's whole
share is one ZADD per 500 distinct customers inside the batch's existing Lua call (no extra
round trip); `bench/bench_thresholds.py` measures its rate with it on beside off, and with this
detector running on the same cores (as in the dev stack, where the entitlements service shares
the machine; where its replicas run on other nodes, the detector's cost leaves the
aggregator's cores altogether). Not a log: the feed is a set, so a customer touched by many
batches while the detector was busy is looked at once; its work is bounded by the customers
whose usage changed, never by the event rate.

**Cost, per customer, not per event.** A pass takes the touched customers `batch` (500) at a
time and makes one `announce` per tenant of a batch (`EntitlementService.announce_usage`,
`counted_notices.py`): the plan data of customers not cached in one pair of statements, the
usage of every feature that can still announce something in one Redis pipeline, and a
decision only for usage that shows a notice this process has not recorded; a customer below
its next threshold costs its evaluation and its share of the pipeline, nothing more.

**Pacing.** A pass starts at most every `interval_s` (1 s): it takes the customers touched up
to its start (those touched during the pass wait for the next), `batch` at a time, decides
them, and drops each one not touched again meanwhile (`TouchedCustomers.done`). So a customer
whose usage keeps changing is decided about once a second, and a notice is announced within
about `interval_s` plus the aggregator's freshness of the event that reached it. The detector
shares the cores with everything else, so it never takes more than `max_share` (a quarter) of
one: a pass that took `t` seconds is followed by a pause of at least `t * (1/max_share - 1)`;
with very many active customers notices come later, never at the cost of checks. A feature
whose every notice of the period is already recorded is not even decided
(`EntitlementService.announce_usage`): a customer past its last threshold costs no read.

**One active detector.** With several replicas, only the one holding a Postgres advisory lock
(`meterline.postgres.leadership`, key `lock_key(prefix)`) sweeps; another takes over within a
pass of the holder's death. Two overlapping briefly only repeat work: the ledger's primary key
lets one of them announce.

**Failures.** A tenant's batch whose decision or recording fails is decided again one customer
at a time; the first customer that fails again stays in the feed with the rest of the batch and
the pass ends; the next pass tries again (at-least-once; the ledger keeps each notice once). A
detector that dies mid-pass has dropped only the customers it decided (`done` comes after the
ledger's transaction): the next one, here after a restart or on the replica that takes the
lock, reads the others from the feed in Redis, with nothing remembered in process (its memo
starts empty, the ledger's key keeps a notice recorded before the death once). A feed lost with
Redis is refilled by the rebuild that follows (every loaded customer is marked).
"""

from __future__ import annotations

import logging
import threading
import time
import zlib
from collections.abc import Callable, Sequence

from meterline.view.touched import Touch, TouchedCustomers

log = logging.getLogger(__name__)

USAGE_NOTICES_KEY = 7_301_003
"""The advisory locks of the active detectors (the reporter's scheduler holds 7_301_002)."""


def lock_key(prefix: str) -> int:
    """The advisory lock of the one detector of the view under Redis key `prefix`: views that
    share a database but not a prefix (tests, benches) each get their detector."""
    return USAGE_NOTICES_KEY << 32 | zlib.crc32(prefix.encode())


Announce = Callable[[int, Sequence[str]], object]


class UsageNoticeSweep:
    """Decides the touched customers of `touched` with `announce(tenant_id, customers)`
    (`EntitlementService.announce_usage`, one call per tenant of a batch) while `leading()`
    says this replica is the one."""

    def __init__(
        self,
        touched: TouchedCustomers,
        announce: Announce,
        *,
        leading: Callable[[], bool] = lambda: True,
        batch: int = 500,
        interval_s: float = 1.0,
        max_share: float = 0.25,
        observe: Callable[[int, int], object] = lambda _decided, _backlog: None,
    ) -> None:
        """`observe(decided, backlog)` is told after each pass (the service's metrics)."""
        self._touched = touched
        self._announce = announce
        self._leading = leading
        self._batch = batch
        self.interval_s = interval_s
        self._max_share = max_share
        self._observe = observe

    def sweep(self) -> int:
        """One pass over the customers touched so far; how many were decided. Raises the
        feed's error when it does not answer."""
        up_to, decided = self._touched.stamp(), 0
        while touches := self._touched.take(self._batch, up_to):
            ok = self._decide(touches)
            self._touched.done(ok)
            decided += len(ok)
            if len(ok) < len(touches):
                break  # the rest next pass: whatever failed is likely to fail again now
        return decided

    def _decide(self, touches: Sequence[Touch]) -> list[Touch]:
        """The touches decided, one `announce` per tenant; a tenant's batch that fails is
        decided again one customer at a time up to the first that fails (the rest wait)."""
        by_tenant: dict[int, list[Touch]] = {}
        for t in touches:
            by_tenant.setdefault(t.tenant_id, []).append(t)
        ok: list[Touch] = []
        for tenant_id, group in by_tenant.items():
            try:
                self._announce(tenant_id, [t.customer for t in group])
            except Exception:
                log.warning("usage notices: deciding a batch failed", exc_info=True)
                alone = self._one_by_one(group)
                ok += alone
                if len(alone) < len(group):
                    break
            else:
                ok += group
        return ok

    def _one_by_one(self, touches: Sequence[Touch]) -> list[Touch]:
        ok = []
        for t in touches:
            try:
                self._announce(t.tenant_id, [t.customer])
            except Exception:
                log.warning("usage notices: deciding a touched customer failed", exc_info=True)
                break
            ok.append(t)
        return ok

    def run(self, stopping: threading.Event) -> None:
        """Sweep every `interval_s` until `stopping` is set (the service's thread)."""
        while not stopping.is_set():
            started = time.monotonic()
            try:
                if self._leading():
                    self._observe(self.sweep(), self._touched.backlog())
            except Exception:
                log.warning("usage notices: the touched feed did not answer", exc_info=True)
            stopping.wait(self.pause_after(time.monotonic() - started))

    def pause_after(self, took: float) -> float:
        """How long to wait after a pass that took `took` seconds (see Pacing)."""
        return max(self.interval_s - took, took * (1 / self._max_share - 1))


class SweepThread:
    """`sweep.run` on a daemon thread of its own; `close` stops it (waiting for the pass)."""

    def __init__(self, sweep: UsageNoticeSweep, release: Callable[[], object] = bool) -> None:
        self._stopping = threading.Event()
        self._release = release
        self._thread = threading.Thread(
            target=sweep.run, args=(self._stopping,), name="usage-notices", daemon=True
        )
        self._thread.start()

    def close(self) -> None:
        self._stopping.set()
        self._thread.join(timeout=10)
        self._release()
