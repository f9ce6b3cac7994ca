"""Chart geometry for the Revenue tab, computed on the server (the page runs no script).

`movement_bars` lays out one stacked bar per month: new, expansion and reactivation above the
zero line, contraction and churn below it, each segment a rectangle with its month, kind and
amount (the template links it to the drill-down). `mrr_lines` gives the points of the MRR line
(left scale) and the trailing NRR line (right scale, with the 100% line). Coordinates are in
the SVG's own units (`WIDTH` x `HEIGHT`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

WIDTH, HEIGHT, PAD = 720, 240, 28
UP = ("new", "expansion", "reactivation")
DOWN = ("contraction", "churn")


@dataclass(frozen=True, slots=True)
class Segment:
    month: str
    kind: str
    amount: int
    x: float
    y: float
    width: float
    height: float


@dataclass(frozen=True, slots=True)
class Bars:
    segments: list[Segment]
    zero_y: float
    labels: list[tuple[float, str]]  # (x, month)


@dataclass(frozen=True, slots=True)
class Lines:
    mrr: str  # SVG polyline points
    nrr: str
    hundred_y: float | None  # where NRR = 100%, None without any NRR
    peak_mrr: int
    peak_nrr: Decimal


def movement_bars(rows: Sequence[dict[str, Any]]) -> Bars:
    """Stacked bars of one currency's monthly rows (`revenue_report.mrr_rows`)."""
    up = max((sum(r[k] for k in UP) for r in rows), default=0)
    down = max((sum(r[k] for k in DOWN) for r in rows), default=0)
    span = (up + down) or 1
    usable = HEIGHT - 2 * PAD
    zero = PAD + usable * up / span
    slot = (WIDTH - 2 * PAD) / max(len(rows), 1)
    segments: list[Segment] = []
    for i, r in enumerate(rows):
        x = PAD + i * slot + slot * 0.2
        segments += _stack(r, UP, x, slot * 0.6, zero, -usable / span)
        segments += _stack(r, DOWN, x, slot * 0.6, zero, usable / span)
    labels = [(PAD + (i + 0.5) * slot, r["month"]) for i, r in enumerate(rows)]
    return Bars(segments, zero, labels)


def _stack(
    row: dict[str, Any], kinds: Sequence[str], x: float, width: float, zero: float, per: float
) -> list[Segment]:
    found, edge = [], zero
    for kind in kinds:
        if row[kind]:
            height = abs(row[kind] * per)
            top = edge - height if per < 0 else edge
            found.append(Segment(row["month"], kind, row[kind], x, top, width, height))
            edge = top if per < 0 else edge + height
    return found


def mrr_lines(rows: Sequence[dict[str, Any]], nrr: Sequence[Decimal | None]) -> Lines:
    """The MRR line of one currency's rows and the NRR line of the same months."""
    peak_mrr = max((r["end_mrr"] for r in rows), default=0) or 1
    known = [v for v in nrr if v is not None]
    peak_nrr = max([*known, Decimal(1)]) * Decimal("1.1")
    slot = (WIDTH - 2 * PAD) / max(len(rows), 1)
    usable = HEIGHT - 2 * PAD

    def y(value: float) -> float:
        return PAD + usable * (1 - value)

    mrr = " ".join(
        f"{PAD + (i + 0.5) * slot:.1f},{y(r['end_mrr'] / peak_mrr):.1f}" for i, r in enumerate(rows)
    )
    nrr_points = " ".join(
        f"{PAD + (i + 0.5) * slot:.1f},{y(float(v / peak_nrr)):.1f}"
        for i, v in enumerate(nrr)
        if v is not None
    )
    hundred = y(float(1 / peak_nrr)) if known else None
    return Lines(mrr, nrr_points, hundred, peak_mrr, peak_nrr)
