"""CSV for people's spreadsheets, neutralised against formula injection (OWASP "CSV Injection").

A spreadsheet runs a cell that starts with `=`, `+`, `-` or `@` (and some do after a leading
tab or carriage return) as a formula, so a customer id like `=HYPERLINK(...)` in an export
would run on a finance laptop. Every export writes through `to_csv`: each text cell that starts
with one of those characters gets a leading `'`, and every text cell is quoted. Numbers are
ours, not input, and are written bare, so `-30.0` stays a number.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
Cell = str | int | float | None


def neutralise(cell: str) -> str:
    """`cell` with a leading `'` when a spreadsheet would read it as a formula."""
    return "'" + cell if cell.startswith(FORMULA_STARTS) else cell


def to_csv(header: Sequence[str], rows: Iterable[Sequence[Cell]]) -> str:
    """A header row then `rows`; text neutralised and quoted, None as an empty text cell."""
    buf = io.StringIO()
    writer = csv.writer(buf, quoting=csv.QUOTE_NONNUMERIC)
    writer.writerow([neutralise(h) for h in header])
    for row in rows:
        writer.writerow([_cell(c) for c in row])
    return buf.getvalue()


def _cell(value: Cell) -> str | int | float:
    if value is None:
        return ""
    if isinstance(value, str):
        return neutralise(value)
    return value
