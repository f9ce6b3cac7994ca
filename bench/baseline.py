"""The naive baseline: each event counted by one `UPDATE ... SET used = used + value` in Postgres.

This is how simple metering systems start: no broker, no batching, no ledger, one statement and
one commit per event. It shows what the pipeline's design buys; it has no dedupe at all, so a
retried event is counted twice.
"""

from __future__ import annotations

import uuid

from bench import workload
from bench.harness import SLOWEST, BenchContext, Figure, rate, repeat
from meterline.postgres import connect


def run(ctx: BenchContext) -> list[Figure]:
    count = ctx.scale(20_000)
    events = workload.make_events(count)
    keys = sorted({(e["customer"], e["meter"]) for e in events})
    table = f"bench_naive_{uuid.uuid4().hex[:8]}"
    with connect(ctx.urls["postgres"], autocommit=True) as conn:
        conn.execute(
            f"CREATE TABLE {table} (tenant_id bigint, customer text, meter text, "
            "used numeric NOT NULL DEFAULT 0, PRIMARY KEY (tenant_id, customer, meter))"
        )
        with conn.cursor() as cur:
            cur.executemany(f"INSERT INTO {table} VALUES (1, %s, %s, 0)", keys)
        update = (
            f"UPDATE {table} SET used = used + %s "
            "WHERE tenant_id = 1 AND customer = %s AND meter = %s"
        )

        def count_all() -> None:
            for e in events:
                conn.execute(update, (e["value"], e["customer"], e["meter"]))

        try:
            value, spread = repeat(lambda: rate(count, count_all), ctx.runs)
        finally:
            conn.execute(f"DROP TABLE IF EXISTS {table}")
    note = f"{count:,} events, one UPDATE and one commit each, no dedupe"
    return [
        Figure("baseline.naive_update", value, "events/s", spread, ctx.runs, SLOWEST, note=note)
    ]
