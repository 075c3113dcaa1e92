"""Write the live ``iterations`` sheet laid out by :mod:`reports._xl_layout`, readable and printable.

Why a writer apart from the layout: the layout decides what each cell computes; this
decides how a person sees it. Headers are wrapped and use short parameter names
(``kernel`` for ``sequential/dense/kernel``, the full names listed above the header);
a thin rule closes each iteration's block and a heavy one each epoch; the settings are
highlighted; panes are frozen below the header; the page is landscape, one page wide,
and a sheet of more than a few hundred rows prints the intro, the first iteration's
first rows and the last iteration's first rows, with a footer note.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from openpyxl.cell import WriteOnlyCell
from openpyxl.styles import Font, PatternFill

from tracer.display import count

from ._excel_cells import cell_value
from ._safe import xlsx_cell
from ._xl_print import PRINT_EDGE_ROWS, PRINT_MAX_ROWS, bordered, header_cells, page_setup, set_widths, short_names

if TYPE_CHECKING:
    from openpyxl import Workbook

    from tracer.trace import Trace

    from ._excel_formulas import FormulaSheet
    from .excel import WorkbookInfo

__all__ = ["write_live_sheet"]

_FILL = PatternFill("solid", fgColor="FFF2CC")


def _short_headers(sheet, headers) -> tuple[list, str | None]:
    """Headers with each parameter's short name, and the note that lists the full names."""
    names = short_names(sheet.analysis.labels) if sheet.analysis is not None else {}
    renamed = {full: short for full, short in names.items() if full != short}
    if not renamed:
        return list(headers), None
    out = []
    for h in headers:
        for full in sorted(renamed, key=len, reverse=True):
            if isinstance(h, str) and full in h:
                h = h.replace(full, renamed[full])
        out.append(h)
    note = "parameter names: " + "; ".join(f"{s} = {f}" for f, s in renamed.items())
    return out, note


def _print_areas(sheet, n_rows: int):
    """The intro with the first iteration's first rows, and the last iteration's first rows."""
    if n_rows <= PRINT_MAX_ROWS or not sheet.blocks:
        return None
    (f0, f1), (l0, l1) = sheet.blocks[0], sheet.blocks[-1]
    first = (1, min(f1, f0 + PRINT_EDGE_ROWS - 1))
    if l0 <= first[1]:
        return [first]
    return [first, (l0, min(l1, l0 + PRINT_EDGE_ROWS - 1))]


def _setting_row(ws, row) -> list:
    cells = []
    for i, v in enumerate(row):
        cell = WriteOnlyCell(ws, value=v)
        if i == 1:
            cell.fill = _FILL
            cell.font = Font(bold=True)
        elif isinstance(v, str):      # a setting's name or note: text, never a formula
            cell.data_type = "s"
        cells.append(cell)
    return cells


def write_live_sheet(wb: Workbook, trace: Trace, sheet: FormulaSheet, info: WorkbookInfo) -> None:
    """The ``iterations`` sheet of a live workbook (see the module docstring)."""
    ws = wb.create_sheet("iterations")
    width = len(sheet.rows[sheet.header_row - 1])
    set_widths(ws, {1: 11, 2: 9, 3: 10}, default=12, n_cols=width)
    ws.freeze_panes = f"H{sheet.header_row + 1}"
    headers, names_note = _short_headers(sheet, sheet.rows[sheet.header_row - 1])
    setting_rows = {int(cell.rsplit("$", 1)[1]) for cell in sheet.setting_cells.values()}
    areas = _print_areas(sheet, len(sheet.rows))
    block_ends = {b[1] for b in sheet.blocks}
    for r, row in enumerate(sheet.rows, start=1):
        if r == sheet.header_row:
            ws.append(header_cells(ws, headers))
        elif r == sheet.header_row - 1 and not row and (names_note or areas):   # the blank row: no row moves
            ws.append([xlsx_cell(ws, _intro_note(names_note, areas, len(sheet.rows)))])
        elif r <= 1 or (row and row[0] == "setting"):
            ws.append([xlsx_cell(ws, cell_value(v), bold=True) for v in row])
        elif r in setting_rows:
            ws.append(_setting_row(ws, row))
        elif r < sheet.header_row:            # the sheet's own notes: text
            ws.append([xlsx_cell(ws, cell_value(v)) for v in row])
        else:   # below the header, strings are the formulas printed by _excel_formulas
            values = [v if isinstance(v, str) else cell_value(v) for v in row]
            ends = _block_end(sheet, r, block_ends)
            ws.append(bordered(ws, values, ends == "epoch") if ends else values)
    page_setup(ws, width, len(sheet.rows), header_row=sheet.header_row, areas=areas or None)
    info.sheets.append("iterations")


def _block_end(sheet, r: int, block_ends: set) -> str | None:
    if r in sheet.epoch_ends:
        return "epoch"
    return "iteration" if r in block_ends else None


def _intro_note(names_note, areas, n_rows) -> str:
    parts = [names_note] if names_note else []
    if areas:
        parts.append(f"printing: this sheet has {count(n_rows, 'row')}; the print area covers the settings, the "
                     "first iteration's first rows and the last iteration's first rows (the file holds every "
                     "row; the per_iteration sheet has one row per iteration)")
    return "; ".join(parts)
