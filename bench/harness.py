"""What every benchmark module shares: the context it runs in and the figures it returns.

A benchmark module is `bench/bench_<name>.py` exposing `run(ctx: BenchContext) -> list[Figure]`.
`python -m bench` runs them all, prints one table and writes `bench/results/<timestamp>.json`.

Ceilings measured by `bench/ceilings.py` in the same run, by figure name (use them as
`Figure(ceiling=...)`): `ceiling.http_single` and `ceiling.http_batch` (a bare ASGI endpoint
parsing the same JSON, events/s), `ceiling.kafka_produce` and `ceiling.kafka_consume`
(confluent-kafka against the broker, msg/s), `ceiling.pg_copy` (COPY of ledger rows, rows/s),
`ceiling.redis_pipeline` (pipelined writes, ops/s). `SLOWEST` as a ceiling means "the slowest of
the stages on the batched path" (all but `ceiling.http_single`): use it for end-to-end figures.

`bench/bench_<name>.py` exposes `run(ctx: BenchContext) -> list[Figure]`. `ctx.urls` has
`postgres`, `redis`, `kafka`, `stripe` and each running service (`ingest`, `entitlements`,
`reporter`, `aggregator`); `ctx.extra` has `tenant` (`bench`), `tenant_id`, `keys` (scope → API
key) with the demo catalog (`deploy/catalog.example.yaml`) applied, `stack` and `home`. Size the
work with `ctx.scale(n)` (a tenth in `--quick`) and measure with `repeat(fn, ctx.runs)`, or make
a figure of one value per run with `Figure.of(name, values, unit)`. Give each figure the ceiling
that bounds it, by name:

Figures whose name holds `end_to_end` or `e2e` get the slowest ceiling when they name none.
Latency figures (ms, s) get no ratio.

A module may measure its own ceiling in the same run: `bench_aggregator.py` reads its pre-filled
topic bare twice, with `decode_event` per message (`aggregator.consume_decode`) and with the
aggregator's column decode (`aggregator.consume_decode_columns`, the ceiling of
`aggregator.sustained`), and reports where a sustained run's CPU goes:
`aggregator.cpu_per_event` (the aggregator process, all threads) and
`aggregator.postgres_cpu_per_event` (the embedded Postgres server and its backends; absent when
Postgres comes from `METERLINE_DATABASE_URL`). These three are the median of `--runs` runs, each
by a new aggregator process on a pre-filled topic of its own.

To drive HTTP load from a module:

reqs = [encode_request("POST", "/v1/events", body, headers={"Authorization": f"Bearer {key}"})]
result = hammer("127.0.0.1", port, reqs, total=10_000, connections=32) result.rate,
result.status_counts, result.percentile(0.99), result.cpu_share ```

The load generator runs in the same 2 cores as what it measures; every HTTP figure's note says
how much of the machine it took.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

SLOWEST = "ceiling.slowest"
CEILINGS = (
    "ceiling.http_single",
    "ceiling.http_batch",
    "ceiling.kafka_produce",
    "ceiling.kafka_consume",
    "ceiling.pg_copy",
    "ceiling.redis_pipeline",
)
PIPELINE_CEILINGS = tuple(c for c in CEILINGS if c != "ceiling.http_single")


@dataclass(frozen=True)
class Figure:
    """One measured figure: the median of `runs` runs, with its spread (max - min).

    `ceiling` names another figure of the same run (e.g. "ceiling.kafka_produce") that bounds
    this one; the table shows value / ceiling as a ratio.
    """

    name: str
    value: float
    unit: str
    spread: float = 0.0
    runs: int = 1
    ceiling: str | None = None
    target: str = ""
    note: str = ""

    @classmethod
    def of(cls, name: str, values: Sequence[float], unit: str, **kw: Any) -> Figure:
        """The figure of one value per run: their median and spread."""
        spread = max(values) - min(values)
        return cls(name, statistics.median(values), unit, spread, len(values), **kw)


@dataclass
class BenchContext:
    """URLs of the backing services (`postgres`, `redis`, `kafka`, `stripe`) and of each running
    service (`ingest`, `entitlements`, `reporter`, `aggregator`), and the run size.

    `extra` holds what the runner prepared: `tenant` (name), `tenant_id`, `keys` (scope -> API
    key, scopes ingest/read/admin) with the demo catalog applied (meters `api_calls`, `tokens`),
    `stack` (the `DevStack`, whose `processes` may be inspected but not stopped) and `home`.
    """

    urls: dict[str, str]
    quick: bool = False
    runs: int = 3
    extra: dict[str, Any] = field(default_factory=dict)

    def scale(self, full: int) -> int:
        """A workload size: `full`, or a tenth of it in quick mode."""
        return max(1, full // 10) if self.quick else full


def repeat(fn: Callable[[], float], runs: int) -> tuple[float, float]:
    """Run `fn` (which returns a rate or a latency) `runs` times: (median, max - min)."""
    values = [fn() for _ in range(runs)]
    return statistics.median(values), max(values) - min(values)


def rate(count: int, fn: Callable[[], object]) -> float:
    """Items per second for doing `count` items in one call of `fn`."""
    start = time.perf_counter()
    fn()
    return count / (time.perf_counter() - start)
