"""Sheets people can read and print: wrapped short headers, borders, page setup, print areas.

Why: a workbook that prints as 2,218 pages, clips its headers ("t (optimiz") and runs
iterations into each other is not one a teacher hands out. Every sheet gets wrapped
headers and readable widths, a thin border under each iteration and a heavier one under
each epoch, frozen panes, a landscape fit-to-width print setup that repeats the header,
and, past :data:`PRINT_MAX_ROWS` rows, a print area of the first and last rows with a
footer that says so (the file keeps every row).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from openpyxl.cell import WriteOnlyCell
from openpyxl.cell.cell import Cell
from openpyxl.styles import Alignment, Border, Font, PatternFill, Side

from tracer.display import count

from ._excel_cells import cell_value
from ._excel_cells import col as letter_of
from ._safe import xlsx_cell

if TYPE_CHECKING:
    from collections.abc import Iterable

    from openpyxl.worksheet._write_only import WriteOnlyWorksheet

__all__ = ["PRINT_MAX_ROWS", "PRINT_EDGE_ROWS", "header_cells", "bordered", "page_setup", "set_widths",
           "print_rows", "short_names"]

#: a sheet longer than this prints its first and last rows only (the file keeps them all)
PRINT_MAX_ROWS = 250
#: rows printed at each end of a long sheet
PRINT_EDGE_ROWS = 100

_THIN, _HEAVY = Side(style="thin", color="999999"), Side(style="medium", color="333333")
_HEAD_FILL = PatternFill("solid", fgColor="EDEDED")
_WRAP = Alignment(wrap_text=True, vertical="top")


def header_cells(ws: WriteOnlyWorksheet, values: Iterable[object]) -> list:
    """A header row: bold, wrapped, shaded, a rule below (text never read as a formula)."""
    out = []
    for v in values:
        c = xlsx_cell(ws, cell_value(v), bold=True)
        if not isinstance(c, Cell):
            c = WriteOnlyCell(ws, value=c)
        c.alignment = _WRAP
        c.fill = _HEAD_FILL
        c.border = Border(bottom=_HEAVY)
        c.font = Font(bold=True)
        out.append(c)
    return out


def bordered(ws: WriteOnlyWorksheet, values: Iterable[object], heavy: bool) -> list:
    """A row that ends an iteration (thin rule) or an epoch (heavy rule)."""
    border = Border(bottom=_HEAVY if heavy else _THIN)
    out = []
    for v in values:
        c = v if isinstance(v, Cell) else WriteOnlyCell(ws, value=v)
        c.border = border
        out.append(c)
    return out


def set_widths(ws: WriteOnlyWorksheet, widths: dict, default: float | None = None, n_cols: int = 0) -> None:
    """Column widths and fit-to-page printing, before the first row is written (a write-only
    sheet writes its properties and columns with its first row): ``{1-based column: width}``."""
    ws.sheet_properties.pageSetUpPr.fitToPage = True
    for c in range(1, n_cols + 1):
        if default is not None and c not in widths:
            ws.column_dimensions[letter_of(c)].width = default
    for c, w in widths.items():
        ws.column_dimensions[letter_of(c)].width = w


def print_rows(n_rows: int, header_rows: int = 1, edge: int = PRINT_EDGE_ROWS) -> list[tuple[int, int]] | None:
    """The row ranges to print for a sheet of ``n_rows`` rows (None: all of them)."""
    if n_rows <= PRINT_MAX_ROWS:
        return None
    first = (1, header_rows + edge)
    last = (max(n_rows - edge + 1, first[1] + 1), n_rows)
    return [first, last]


def page_setup(ws: WriteOnlyWorksheet, n_cols: int, n_rows: int, header_row: int | None = 1,
               areas: list[tuple[int, int]] | None = None, landscape: bool = True, what: str = "rows") -> None:
    """Landscape, one page wide, the header repeated on each page; long sheets print their
    first and last rows (``areas``: explicit ``[(first row, last row)]``) with a footer note."""
    ws.page_setup.orientation = "landscape" if landscape else "portrait"
    ws.page_setup.paperSize = "9"     # A4
    ws.page_setup.fitToWidth = 1
    ws.page_setup.fitToHeight = 0      # as many pages down as needed (fitToPage: set_widths)
    ws.page_margins.left = ws.page_margins.right = 0.4
    ws.page_margins.top = ws.page_margins.bottom = 0.6
    ws.print_options.gridLines = False
    if header_row:
        ws.print_title_rows = f"{header_row}:{header_row}"
    areas = areas if areas is not None else print_rows(n_rows, header_row or 1)
    last = letter_of(max(1, n_cols))
    ws.oddFooter.right.text = "page &P of &N"
    if areas:
        ws.print_area = ",".join(f"A{a}:{last}{b}" for a, b in areas)
        shown = sum(b - a + 1 for a, b in areas)
        ws.oddFooter.left.text = (f"Printed: {count(shown, 'row')} of {n_rows:,} (the first and the last); the "
                                  f"file holds every row")
        ws.oddFooter.left.size = 8


def short_names(names: Iterable[str]) -> dict:
    """``{full name: short name}``: the last part of a path (``sequential/dense/kernel`` ->
    ``kernel``), more parts where two would read the same."""
    names = list(names)
    out = {}
    for n in names:
        parts = str(n).split("/")
        for k in range(1, len(parts) + 1):
            cand = "/".join(parts[-k:])
            if sum(1 for m in names if "/".join(str(m).split("/")[-k:]) == cand) == 1:
                out[n] = cand
                break
        else:
            out[n] = str(n)
    return out
