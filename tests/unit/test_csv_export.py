"""`meterline.csv_export`: no cell of an export reads back as a formula, and nothing is lost."""

from __future__ import annotations

import csv
import io

from hypothesis import given
from hypothesis import strategies as st

from meterline.csv_export import FORMULA_STARTS, to_csv

cells = st.one_of(st.text(), st.none(), st.integers(-(10**9), 10**9), st.floats(-1e9, 1e9))


@given(st.lists(st.lists(cells, min_size=3, max_size=3), max_size=5))
def test_text_reads_back_neutralised_and_numbers_bare(rows: list[list[object]]) -> None:
    text = to_csv(["a", "b", "c"], rows)  # type: ignore[arg-type]
    back = list(csv.reader(io.StringIO(text, newline="")))
    assert back[0] == ["a", "b", "c"] and len(back) == len(rows) + 1
    for written, read in zip(rows, back[1:], strict=True):
        for value, cell in zip(written, read, strict=True):
            assert not cell.startswith(FORMULA_STARTS) or isinstance(value, int | float)
            if isinstance(value, str) and value.startswith(FORMULA_STARTS):
                assert cell == "'" + value
            elif isinstance(value, str):
                assert cell == value
            elif value is None:
                assert cell == ""
            else:
                assert float(cell) == value
