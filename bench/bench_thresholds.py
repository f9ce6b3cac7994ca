"""What entitlement notices cost a consume (thresholds on), beside nothing (thresholds off).

Detection runs on the consume path (meterline/entitlements/README.md, "Thresholds"), not in
the aggregator, so the aggregator's sustained rate is the same with thresholds on or off by
construction: it runs no threshold code (`bench_aggregator`'s figure is the one for both).
What a consume pays instead, measured here against the context's Postgres:

- `thresholds_answer_us`: `Notifier.announce` on an answer whose notices this process already
  recorded, the common case (no I/O: the answer is read, the memo says all known);
- `thresholds_notice_ms`: an answer with one new notice: one Postgres transaction writing the
  notice's row (ON CONFLICT DO NOTHING) and its outbox message. At most a few per customer,
  feature and period.
"""

from __future__ import annotations

import time

from bench.harness import BenchContext, Figure
from meterline.entitlements.thresholds import Notifier
from meterline.notify.postgres.notices import PostgresNoticeLedger
from meterline.postgres import open_pool

PERCENTS = (50, 80, 100)


def _body(used: float, period_start: str) -> dict[str, object]:
    return {"feature": "api_calls", "used": used, "limit": 100, "overage": "block",
            "plan": "free", "period": {"start": period_start, "end": "2100-01-01T00:00:00Z"},
            "as_of": "2026-12-06T10:00:00Z", "granted": True, "reason": "within_limit"}  # fmt: skip


def run(ctx: BenchContext) -> list[Figure]:
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
