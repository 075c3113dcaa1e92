"""The ``iterations`` sheet with values: one row per iteration, as a learner builds it by hand.

Why: when the live sheet cannot be written (a model too large, an unknown loss) the
workbook still shows the run the way the S2 learner laid it out: epoch, batch,
iteration, the rows used (as ranges: ``0-3, 8``), lr, loss, what the framework logged,
and each parameter (short names) before and after. Rows are ruled per iteration and
heavier per epoch; long runs print their first and last rows (:mod:`reports._xl_print`).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable

import numpy as np

from tracer.display import compact_rows

from ._excel_cells import cell_value
from ._safe import xlsx_cell
from ._xl_print import bordered, header_cells, page_setup, set_widths, short_names

if TYPE_CHECKING:
    from openpyxl import Workbook
    from openpyxl.worksheet._write_only import WriteOnlyWorksheet

    from tracer.arrays import TraceArrays
    from tracer.trace import Trace

    from .excel import WorkbookInfo

__all__ = ["write_values_iterations", "VALUES_MAX_PARAM_ELEMENTS"]

#: parameter elements shown as before/after columns on the values ``iterations`` sheet
VALUES_MAX_PARAM_ELEMENTS = 100
#: up to this many iterations every row gets a thin rule (beyond: only the epochs' heavy ones)
BORDERED_ROWS = 2000


def _element_labels(trace: Trace) -> list[tuple[str, int, str]]:
    labels = []
    for pname in trace.param_names:
        shape = trace.param_shape(pname)
        size = int(np.prod(shape, dtype=np.int64))
        for idx in range(size):
            lab = pname if size == 1 else f"{pname}[{','.join(str(i) for i in np.unravel_index(idx, shape))}]"
            labels.append((pname, idx, lab))
    return labels


def write_values_iterations(wb: Workbook, trace: Trace, info: WorkbookInfo, reason: str | None,
                            sheet_parts: Callable[[str, int], list[tuple[str, int, int]]]) -> dict:
    """One row per iteration: the by-hand layout with values. Returns chart sources."""
    a = trace.arrays()
    steps = trace.steps
    n = len(steps)
    labels = _element_labels(trace) if a.params else []
    show_params = 0 < len(labels) <= VALUES_MAX_PARAM_ELEMENTS
    logged = [c for c in steps.columns if c.startswith("logged_")]
    headers = _headers(trace, labels, logged, show_params)
    rows_used = _rows_used(a, steps["step"].to_numpy())
    pos = {int(s): i for i, s in enumerate(a.param_step)}
    note = _note(reason, labels, show_params)
    top = 1 if note else 0
    parts = sheet_parts("iterations", n + top)
    cols = {c: steps[c].to_numpy() for c in ["epoch", "batch", "step", "loss", "lr"] + logged
            if c in steps.columns}
    bs = steps["batch_size"].to_numpy() if "batch_size" in steps.columns else np.full(n, np.nan)
    src = None
    for p_i, (title, plo, phi) in enumerate(parts):
        ws = wb.create_sheet(title)
        set_widths(ws, {1: 7, 2: 7, 3: 9, 4: 8, 5: 24}, default=12, n_cols=len(headers))
        ws.freeze_panes = f"D{2 + (top if p_i == 0 else 0)}"
        if p_i == 0 and note:
            ws.append([xlsx_cell(ws, note, bold=True)])
        ws.append(header_cells(ws, headers))
        first_data_row = 2 + (top if p_i == 0 else 0)
        rlo = max(plo - top, 0)
        rhi = phi - top
        for r in range(rlo, rhi):
            row = _step_row(ws, r, cols, bs, rows_used, logged)
            if show_params:
                row += _param_cells(a, pos.get(int(cols["step"][r])), labels)
            end = r + 1 == n or cols["epoch"][r + 1] != cols["epoch"][r]
            ws.append(bordered(ws, row, end) if end or n <= BORDERED_ROWS else row)
        page_setup(ws, len(headers), rhi - rlo + first_data_row - 1, header_row=first_data_row - 1)
        info.sheets.append(title)
        if p_i == 0:
            last = first_data_row + (rhi - rlo) - 1
            src = {"sheet": title, "first": first_data_row, "last": last, "x_col": 3, "loss_col": 7,
                   "params": ({lab: 9 + len(logged) + 2 * i for i, (_, _, lab) in enumerate(labels)}
                              if show_params else {})}
    return src


def _headers(trace: Trace, labels: list[tuple[str, int, str]], logged: list[str], show_params: bool) -> list[str]:
    """The column titles, in the learner's order: where the step sits, its numbers, what the
    framework logged, then each parameter element (short names) before and after."""
    headers = ["epoch", "batch", "iteration", "batch size", "rows used (0-based data rows)", "lr", "loss"]
    names = short_names(trace.param_names)
    headers += [c[len("logged_"):] + " (logged)" for c in logged]
    if show_params:
        for pname, _, lab in labels:
            short = lab.replace(pname, names[pname], 1)
            headers += [f"{short} before", f"{short} after"]
    return headers


def _rows_used(a: TraceArrays, step_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The data rows each step used: ``(rows sorted by step, lo, hi)`` so that step ``i`` used
    ``rows[lo[i]:hi[i]]`` - one sort for the whole run instead of a search per row."""
    order = np.argsort(a.sample_step, kind="stable")
    s_step, s_row = a.sample_step[order], a.sample_row[order]
    lo = np.searchsorted(s_step, step_ids, side="left")
    hi = np.searchsorted(s_step, step_ids, side="right")
    return s_row, lo, hi


def _note(reason: str | None, labels: list[tuple[str, int, str]], show_params: bool) -> str | None:
    """The line above the table saying why the sheet holds values only, or why the
    parameters are not in it (None when neither)."""
    if reason:
        return f"Formulas were not written: {reason}. The values below are the recorded ones."
    if not show_params and labels:
        return (f"{len(labels)} parameter elements: too many for columns here "
                f"(limit {VALUES_MAX_PARAM_ELEMENTS}); see the params sheet(s).")
    return None


def _step_row(ws: WriteOnlyWorksheet, r: int, cols: dict[str, np.ndarray], bs: np.ndarray,
              rows_used: tuple[np.ndarray, np.ndarray, np.ndarray], logged: list[str]) -> list:
    """Step ``r``'s cells before the parameters: where it sits, the rows it used (as ranges),
    lr, loss and the logged values (text a spreadsheet would evaluate is written as text)."""
    s_row, lo, hi = rows_used
    row = [int(cols["epoch"][r]), int(cols["batch"][r]), int(cols["step"][r]), cell_value(bs[r]),
           compact_rows(s_row[lo[r]:hi[r]]) if hi[r] > lo[r] else None,
           cell_value(cols["lr"][r]) if "lr" in cols else None,
           cell_value(cols["loss"][r]) if "loss" in cols else None]
    row += [xlsx_cell(ws, cell_value(cols[c][r])) for c in logged]
    return row


def _param_cells(a: TraceArrays, k: int | None, labels: list[tuple[str, int, str]]) -> list:
    """Each parameter element before and after the step stored at index ``k`` (blank pairs
    for a step whose parameters were not stored)."""
    row: list = []
    for pname, idx, _ in labels:
        if k is None:
            row += [None, None]
        else:
            p = a.params[pname]
            row += [cell_value(p.before[k, idx]), cell_value(p.after[k, idx])]
    return row
