"""What thresholds cost: the aggregator's sustained rate with the detector of counted usage on
beside off, and what a consume pays for its notices.

Detection of ingested usage runs in the entitlements service, not in the aggregator
(meterline/entitlements/usage_notices.py): the aggregator only marks each batch's customers in
the view, inside the batch's existing Redis call (`METERLINE_AGGREGATOR_MARK_TOUCHED`), and the
service's detector decides the marked customers about once a second. Both compete for the same
2 cores, so the "on" run has both: an aggregator that marks, and a detector (the entitlements
service's own, built in this process on the same Postgres and Redis prefix) deciding a catalog
whose default plan announces at 50/80/100% of a limit that every customer passes. The "off" run
has an aggregator that does not mark and no detector; "marked" marks with no detector. The
three alternate, each on a pre-filled topic of its own (`bench_aggregator`'s 500 customers):

- `thresholds.aggregator_off` / `_marked` / `_on`: sustained events/s not marking, marking
  with no detector (the aggregator's own share), marking with the detector running;
- `thresholds.aggregator_cpu_off` / `_marked` / `_on`: the aggregator process's CPU per event;
- `thresholds.detector_cpu_per_event`: the detector thread's CPU per event counted meanwhile;
- `thresholds.detector_cpu_per_customer`: the same CPU per customer decided (what it scales
  with: a customer is decided about once a second while its usage changes, however many of
  its events arrive);
- `thresholds_answer_us`: `Notifier.announce` on an answer whose notices this process already
  recorded, the common case on the consume path (no I/O);
- `thresholds_notice_ms`: an answer with one new notice: one Postgres transaction writing the
  notice's row (ON CONFLICT DO NOTHING) and its outbox message. At most a few per customer,
  feature and period.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from pathlib import Path

from bench import bench_aggregator as agg
from bench.harness import BenchContext, Figure
from entitlements_api.settings import EntitlementsSettings
from entitlements_api.wiring import Dependencies, build
from meterline.catalog.parse import parse_catalog
from meterline.catalog.repository import PostgresCatalogRepository
from meterline.entitlements.thresholds import Notifier
from meterline.kafka import ensure_topics
from meterline.notify.postgres.notices import PostgresNoticeLedger
from meterline.postgres import open_pool
from meterline.settings import load_settings
from meterline.tenants import PostgresTenantRepository

PERCENTS = (50, 80, 100)


def _body(used: float, period_start: str) -> dict[str, object]:
    return {"feature": "api_calls", "used": used, "limit": 100, "overage": "block",
            "plan": "free", "period": {"start": period_start, "end": "2100-01-01T00:00:00Z"},
            "as_of": "2026-12-06T10:00:00Z", "granted": True, "reason": "within_limit"}  # fmt: skip


CATALOG = {
    "meters": [{"key": "calls", "aggregation": "sum"}, {"key": "peak", "aggregation": "max"}],
    "features": [{"key": "calls", "kind": "metered", "meter": "calls"}],
    "plans": [
        {"key": "free", "default": True, "notify_at": [50, 80, 100],
         "features": {"calls": {"limit": 1000, "reset": "month", "overage": "block"}}},
    ],
}  # fmt: skip


def run(ctx: BenchContext) -> list[Figure]:
    return [*_aggregator_figures(ctx), *_consume_figures(ctx)]


def _aggregator_figures(ctx: BenchContext) -> list[Figure]:
    n = max(ctx.scale(200_000), agg.MIN_EVENTS)
    off: list[tuple[float, float]] = []
    marked: list[tuple[float, float]] = []
    on: list[tuple[float, float, float, float]] = []
    for _ in range(ctx.runs):  # alternating: off, marked only, on; each on a topic of its own
        off.append(_timed(ctx, *_topic(ctx, n), n, "false"))
        marked.append(_timed(ctx, *_topic(ctx, n), n, "true"))
        on.append(_rate_on(ctx, n))
    note = f"{n} events, 500 customers, limits with notify_at 50/80/100"
    return [
        Figure.of("thresholds.aggregator_off", [r for r, _ in off], "events/s",
                  target=">= 100000", note=f"{note}; not marked, no detector"),
        Figure.of("thresholds.aggregator_marked", [r for r, _ in marked], "events/s",
                  target=">= 100000", note=f"{note}; marked, no detector"),
        Figure.of("thresholds.aggregator_on", [r[0] for r in on], "events/s",
                  target=">= 100000", note=f"{note}; marked, detector running"),
        Figure.of("thresholds.aggregator_cpu_off", [c for _, c in off], "µs"),
        Figure.of("thresholds.aggregator_cpu_marked", [c for _, c in marked], "µs"),
        Figure.of("thresholds.aggregator_cpu_on", [r[1] for r in on], "µs"),
        Figure.of("thresholds.detector_cpu_per_event", [r[2] for r in on], "µs",
                  note="the detector thread's CPU over the events counted meanwhile: it "
                  "decides each changed customer about once a second, so it scales with "
                  "customers, not events"),
        Figure.of("thresholds.detector_cpu_per_customer", [r[3] for r in on], "µs",
                  note="the same CPU per customer decided (a read of its usage; a decision "
                  "and the ledger only for the 1,500 notices, 3 per customer, of the run)"),
    ]  # fmt: skip


def _topic(ctx: BenchContext, n: int) -> tuple[str, str]:
    """(tag, topic) of a new topic holding `n` events of a new tenant with the catalog."""
    tag = uuid.uuid4().hex[:8]
    with open_pool(ctx.urls["postgres"], max_size=1) as pool:
        tenant = PostgresTenantRepository(pool).create_tenant(f"bench-{tag}").id
        PostgresCatalogRepository(pool).apply(tenant, parse_catalog(CATALOG))
    topic = f"bench.{tag}.usage"
    ensure_topics(ctx.urls["kafka"], [topic, f"bench.{tag}.dlq"], 4)
    agg.prefill(ctx.urls["kafka"], topic, tenant, n)
    return tag, topic


def _rate_on(ctx: BenchContext, n: int) -> tuple[float, float, float, float]:
    """(events/s, aggregator CPU µs/event, detector CPU µs/event, detector CPU µs/customer
    decided) of an aggregator that marks, with the detector running."""
    tag, topic = _topic(ctx, n)
    deps = build(load_settings(_env(ctx, tag, topic)), EntitlementsSettings())
    try:
        (thread,) = [t for t in threading.enumerate() if t.name == "usage-notices"]
        before, decided = _thread_cpu_s(thread.native_id), _decided(deps)
        rate, cpu = _timed(ctx, tag, topic, n, "true")
        detector = _thread_cpu_s(thread.native_id) - before
        decided = _decided(deps) - decided
    finally:
        deps.close()
    return rate, cpu, detector / n * 1e6, detector / max(1.0, decided) * 1e6


def _decided(deps: Dependencies) -> float:
    """Customers the detector has decided so far (its metric)."""
    name = "meterline_entitlements_usage_notice_customers_total"
    return deps.metrics.registry.get_sample_value(name) or 0.0


def _timed(ctx: BenchContext, tag: str, topic: str, n: int, mark: str) -> tuple[float, float]:
    rate, cpu, _ = agg.aggregator_rate(ctx, tag, topic, n, METERLINE_AGGREGATOR_MARK_TOUCHED=mark)
    return rate, cpu


def _env(ctx: BenchContext, tag: str, topic: str) -> dict[str, str]:
    return {
        "METERLINE_DATABASE_URL": ctx.urls["postgres"],
        "METERLINE_REDIS_URL": ctx.urls["redis"],
        "METERLINE_KAFKA_BOOTSTRAP": ctx.urls["kafka"],
        "METERLINE_KAFKA_TOPIC": topic,
        "METERLINE_STRIPE_API_BASE": ctx.urls["stripe"],
        "METERLINE_REDIS_KEY_PREFIX": f"b{tag}",
    }


def _thread_cpu_s(native_id: int | None) -> float:
    """User + system CPU seconds of one thread of this process (Linux /proc)."""
    stat = Path(f"/proc/self/task/{native_id}/stat").read_text()
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _consume_figures(ctx: BenchContext) -> list[Figure]:
    tenant_id = int(ctx.extra["tenant_id"])
    with open_pool(ctx.urls["postgres"], max_size=2) as pool:
        notifier = Notifier(PostgresNoticeLedger(pool))
        answers, notices = [], []
        for run_index in range(ctx.runs):
            stamp = f"bench-{time.time_ns()}-{run_index}"
            answers.append(_known_answer_us(notifier, tenant_id, stamp, ctx.scale(200_000)))
            notices.append(_new_notice_ms(notifier, tenant_id, stamp, ctx.scale(2_000)))
    conditions = "one process, thresholds 50/80/100"
    return [
        Figure.of("thresholds_answer_us", answers, "µs", note=f"{conditions}; all known"),
        Figure.of("thresholds_notice_ms", notices, "ms", note=f"{conditions}; one new notice"),
    ]


def _known_answer_us(notifier: Notifier, tenant_id: int, stamp: str, count: int) -> float:
    body = _body(100, "2026-12-01T00:00:00Z")
    notifier.announce(tenant_id, stamp, body, PERCENTS)
    start = time.perf_counter()
    for _ in range(count):
        notifier.announce(tenant_id, stamp, body, PERCENTS)
    return (time.perf_counter() - start) / count * 1e6


def _new_notice_ms(notifier: Notifier, tenant_id: int, stamp: str, count: int) -> float:
    start = time.perf_counter()
    for n in range(count):
        notifier.announce(tenant_id, f"{stamp}-{n}", _body(50, "2026-12-01T00:00:00Z"), PERCENTS)
    return (time.perf_counter() - start) / count * 1e3
