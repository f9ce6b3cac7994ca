"""Server-rendered SVG charts: a bar per window of a usage series, no JavaScript.

`usage_chart` takes Meterline's series (`GET /v1/usage`: `start`, `value` per window) and
answers an `<svg>` element with a `<title>` and `data-total`, so the page, screen readers and
tests read the same numbers the bars show.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from html import escape
from typing import Any

WIDTH, HEIGHT, AXIS = 600, 160, 20


def usage_chart(feature: str, series: Sequence[dict[str, Any]]) -> str:
    """An SVG bar chart of `series` (oldest first); an empty series draws the axis alone."""
    values = [Decimal(str(point["value"])) for point in series]
    total = sum(values, Decimal(0))
    peak = max(values, default=Decimal(0))
    slot = WIDTH / max(len(values), 1)
    bars = "".join(
        _bar(i * slot, slot, value, peak, point["start"])
        for i, (value, point) in enumerate(zip(values, series, strict=True))
        if value > 0
    )
    title = f"{feature}: {_plain(total)} in the last {len(values)} minutes"
    first, last = (_clock(series[0]["start"]), _clock(series[-1]["start"])) if series else ("", "")
    return (
        f'<svg class="chart" role="img" viewBox="0 0 {WIDTH} {HEIGHT + AXIS}" '
        f'width="{WIDTH}" height="{HEIGHT + AXIS}" data-feature="{escape(feature)}" '
        f'data-total="{_plain(total)}"><title>{escape(title)}</title>'
        f'<line x1="0" y1="{HEIGHT}" x2="{WIDTH}" y2="{HEIGHT}" stroke="#999"/>{bars}'
        f'<text x="0" y="{HEIGHT + 15}" font-size="11">{escape(first)}</text>'
        f'<text x="{WIDTH}" y="{HEIGHT + 15}" font-size="11" text-anchor="end">'
        f"{escape(last)}</text></svg>"
    )


def _bar(x: float, slot: float, value: Decimal, peak: Decimal, start: str) -> str:
    height = max(float(value / peak) * (HEIGHT - 10), 1.0)
    return (
        f'<rect x="{x + slot * 0.1:.1f}" y="{HEIGHT - height:.1f}" width="{slot * 0.8:.1f}" '
        f'height="{height:.1f}" fill="#4b6cb7"><title>{escape(_clock(start))}: '
        f"{_plain(value)}</title></rect>"
    )


def _clock(iso: str) -> str:
    """`HH:MM` of an ISO 8601 time (UTC)."""
    return iso[11:16]


def _plain(value: Decimal) -> str:
    """A decimal without exponent or trailing zeros (`10`, `0.5`)."""
    text = f"{value.normalize():f}"
    return text
