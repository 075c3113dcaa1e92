"""Small helpers shared by the Excel writers: cell references, safe cell values, styles.

Why separate: both the values workbook and the live-formula sheet need the same rules
(NaN is an empty cell, not the text ``nan`` that makes Excel call the file corrupt;
absolute references for parameters, relative for rows).
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
from openpyxl.utils import get_column_letter

if TYPE_CHECKING:
    from collections.abc import Iterable

#: Excel's hard limit on rows per sheet, header included (lowered in tests to force splits)
EXCEL_MAX_ROWS = 1_048_576
#: Excel's limit on characters in one cell
EXCEL_MAX_CELL_CHARS = 32_767


def col(c: int) -> str:
    """Column letter of 1-based column ``c``."""
    return get_column_letter(c)


def ref(c: int, r: int, absolute: bool = False, sheet: str | None = None) -> str:
    """``B7`` / ``$B$7`` / ``'sheet'!$B$7`` for 1-based column ``c`` and row ``r``."""
    s = f"${col(c)}${r}" if absolute else f"{col(c)}{r}"
    return f"'{sheet}'!{s}" if sheet else s


def rng(c: int, r0: int, r1: int) -> str:
    """``B7:B10``: a column range."""
    return f"{col(c)}{r0}:{col(c)}{r1}"


def cell_value(v: object) -> object:
    """A value openpyxl can write and Excel accepts: NaN -> empty, inf -> text, numpy -> Python."""
    if v is None:
        return None
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (float, np.floating)):
        f = float(v)
        if math.isnan(f):
            return None
        if math.isinf(f):
            return "inf" if f > 0 else "-inf"
        return f
    if isinstance(v, (np.bool_, bool)):
        return bool(v)
    if isinstance(v, str) and len(v) > EXCEL_MAX_CELL_CHARS:
        return v[:EXCEL_MAX_CELL_CHARS - 20] + " ... (cut)"
    return v


def rows_text(rows: Iterable[int], limit: int = 200) -> str:
    """The rows a batch used, as text a person can read: ``3, 7, 1, 9``."""
    rows = list(rows)
    text = ", ".join(str(int(r)) for r in rows[:limit])
    if len(rows) > limit:
        text += f", ... (+{len(rows) - limit} more)"
    return text
