"""The Revenue tab's chart geometry: gains stack above the zero line, losses below, each
segment's height proportional to its amount; the lines follow MRR and NRR."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reporter.revenue_charts import HEIGHT, PAD, movement_bars, mrr_lines

KINDS = ("new", "expansion", "reactivation", "contraction", "churn")


def row(month: str, **amounts: int) -> dict[str, Any]:
    return {"month": month, "end_mrr": amounts.pop("end_mrr", 0), **dict.fromkeys(KINDS, 0),
            **amounts}  # fmt: skip


def test_gains_above_losses_below() -> None:
    bars = movement_bars([row("2026-01", new=300, expansion=100), row("2026-02", churn=200)])
    # Peak gain 400, peak loss 200: the zero line sits at 2/3 of the usable height.
    assert bars.zero_y == pytest.approx(PAD + (HEIGHT - 2 * PAD) * 400 / 600)
    new, expansion, churn = bars.segments
    assert (new.kind, expansion.kind, churn.kind) == ("new", "expansion", "churn")
    assert new.y + new.height == pytest.approx(bars.zero_y)  # new sits on the line
    assert expansion.y + expansion.height == pytest.approx(new.y)  # expansion on top of it
    assert churn.y == pytest.approx(bars.zero_y)  # churn hangs below
    assert new.height == pytest.approx(3 * expansion.height)
    assert churn.height == pytest.approx(2 * expansion.height)


@given(st.lists(st.tuples(*[st.integers(0, 10**9)] * 5), min_size=1, max_size=24))
def test_bars_stay_inside_the_chart(amounts: list[tuple[int, ...]]) -> None:
    rows = [row(f"m{i}", **dict(zip(KINDS, a, strict=True))) for i, a in enumerate(amounts)]
    for s in movement_bars(rows).segments:
        assert s.y >= PAD - 1e-6 and s.y + s.height <= HEIGHT - PAD + 1e-6
        assert s.height > 0


def test_lines_scale_mrr_and_nrr() -> None:
    lines = mrr_lines(
        [row("2026-01", end_mrr=100), row("2026-02", end_mrr=200)], [None, Decimal("1.5")]
    )
    (low, high) = [tuple(map(float, p.split(","))) for p in lines.mrr.split()]
    assert high[1] == PAD and low[1] == pytest.approx(PAD + (HEIGHT - 2 * PAD) / 2)
    assert len(lines.nrr.split()) == 1  # the month without NRR is left out
    assert lines.hundred_y is not None and lines.peak_nrr == Decimal("1.65")
