"""Excel export: the trace as a workbook a learner can read, check and replay.

Sheets:

- ``about``: what was recorded (framework, model, loss, optimizer, notes) and, when the
  live sheet could not be written, why.
- ``iterations``: laid out as a learner builds it by hand. With ``formulas=False`` one
  row per iteration (epoch, batch, iteration, the rows used, lr, loss, logged values,
  each parameter before and after). With ``formulas=True`` and a model small enough
  (see :mod:`reports._excel_formulas`: at most 3 matrix products, 64 parameter elements
  and 250,000 batch rows) a block of rows per iteration whose program values, loss,
  gradients, optimizer state and updated parameters are Excel formulas: the checker's step
  program mapped to cells, printed from the registry's sympy expressions; otherwise the
  sheet holds values and says why in its first row.
- ``per_iteration`` (formulas only): one row per iteration, all live: the batch loss, the
  running mean of the epoch so far (what Keras logs), the logged value, the loss of all
  rows with the weights after the update, the same for each logged RMSE/MSE/MAE, and each
  parameter after the update (:mod:`reports._xl_summary`); what the charts draw.
- ``charts``: native Excel charts, loss per iteration and each parameter's path.
- ``data``, ``steps``, ``samples``, ``params``, ``epochs``: the trace's tables. A table
  longer than Excel's 1,048,576 rows (header included, :data:`EXCEL_MAX_ROWS`) is split
  into ``params_1``, ``params_2``, ...

Every sheet is readable and printable (:mod:`reports._xl_print`): wrapped headers with
short parameter names, a rule under each iteration and a heavier one under each epoch,
frozen panes, landscape one page wide, and long sheets print their first and last rows.
The workbook is written in openpyxl's streaming (write-only) mode, so memory stays flat
for large traces.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from tracer.atomic import probe_dir, replacing_file
from tracer.display import count
from tracer.errors import TraceFileError, TraceInputError

from . import _excel_cells
from ._excel_cells import cell_value
from ._safe import xlsx_cell, xlsx_text
from ._xl_print import header_cells, page_setup, set_widths
from ._xl_values_sheet import VALUES_MAX_PARAM_ELEMENTS, write_values_iterations

if TYPE_CHECKING:
    import os
    from collections.abc import Callable

    from tracer.trace import Trace

__all__ = ["to_excel", "write_workbook", "WorkbookInfo", "FormulasNotWritten", "VALUES_MAX_PARAM_ELEMENTS",
           "CHART_MAX_SERIES"]

#: parameter elements drawn in the parameter-path charts
CHART_MAX_SERIES = 12


@dataclass
class WorkbookInfo:
    """What :func:`write_workbook` wrote: sheet names, whether formulas are live, and the
    formula cells with the trace's value for each (``checks``, used by the tests)."""

    path: Path
    sheets: list = field(default_factory=list)
    formulas: bool = False
    reason: str | None = None
    checks: list = field(default_factory=list)
    lr_cell: str | None = None
    n_formulas: int = 0
    summary_checks: list = field(default_factory=list)   # per_iteration formula cells and their values
    notes: list = field(default_factory=list)


def to_excel(trace: Trace, path: str | os.PathLike, formulas: bool = False,
             progress: Callable[[int, int, str], object] | None = None) -> Path:
    """Write ``trace`` to the .xlsx file ``path`` and return the path.

    ``formulas=True`` makes the ``iterations`` sheet live (see the module docstring); when it
    cannot be, the workbook holds values and a :class:`FormulasNotWritten` warning says why.
    ``progress`` is an optional callable ``progress(done, total, what)``.
    An unwritable path raises :class:`tracer.errors.TraceFileError`.
    """
    info = write_workbook(trace, path, formulas=formulas, progress=progress)
    if formulas and not info.formulas:
        import warnings
        warnings.warn(FormulasNotWritten(f"{info.path} holds values, not live formulas: {info.reason}"),
                      stacklevel=2)
    return info.path


class FormulasNotWritten(UserWarning):
    """``formulas=True`` was asked for, and the workbook holds values (the message says why)."""


def _sheet_parts(name: str, n_rows: int) -> list[tuple[str, int, int]]:
    """Split ``n_rows`` data rows into sheets of at most EXCEL_MAX_ROWS - 1 rows (+ header)."""
    per = _excel_cells.EXCEL_MAX_ROWS - 1
    if n_rows <= per:
        return [(name, 0, n_rows)]
    parts = []
    for i, lo in enumerate(range(0, n_rows, per), start=1):
        parts.append((f"{name}_{i}", lo, min(lo + per, n_rows)))
    return parts


def _text_row(ws, values):
    """A row of labels and values: strings a spreadsheet would evaluate are written as text."""
    return [xlsx_cell(ws, cell_value(v)) for v in values]


def _write_frame(wb, name, frame, info, progress):
    cols = list(frame.columns)
    text = [frame[c].dtype.kind not in "biufc" for c in cols]
    arrays = [frame[c].to_numpy(dtype=object) if t else frame[c].to_numpy() for c, t in zip(cols, text)]
    for title, lo, hi in _sheet_parts(name, len(frame)):
        ws = wb.create_sheet(title)
        set_widths(ws, {}, default=12, n_cols=len(cols))
        ws.freeze_panes = "A2"
        ws.append(header_cells(ws, cols))
        for i in range(lo, hi):
            ws.append([xlsx_cell(ws, cell_value(arr[i])) if t else cell_value(arr[i])
                       for arr, t in zip(arrays, text)])
        page_setup(ws, len(cols), hi - lo + 1, landscape=len(cols) > 8)
        info.sheets.append(title)
        if progress:
            progress(1, 0, f"sheet {title}")


def _wrapped(ws, values) -> list:
    """A label and a long text that wraps (the about sheet)."""
    from openpyxl.cell import WriteOnlyCell
    from openpyxl.cell.cell import Cell
    from openpyxl.styles import Alignment
    out = []
    for v in _text_row(ws, values):
        c = v if isinstance(v, Cell) else WriteOnlyCell(ws, value=v)
        c.alignment = Alignment(wrap_text=True, vertical="top")
        out.append(c)
    return out


def _write_about(wb, trace, info, reason):
    ws = wb.create_sheet("about", 0)
    set_widths(ws, {1: 22, 2: 110})
    meta = trace.meta
    ws.append(header_cells(ws, ["steptrace trace", f"{meta.get('framework', '?')} run, "
                                                   f"{count(trace.n_steps, 'iteration')}"]))
    ws.append(_wrapped(ws, ["iterations sheet", "live formulas (edit a setting to replay the training)"
                            if info.formulas else "values" + (f" - formulas not written: {reason}" if reason else "")]))
    for key in ("model", "loss", "optimizer", "metrics", "data", "params", "capture", "versions"):
        if meta.get(key) is not None:
            ws.append(_wrapped(ws, [key, json.dumps(meta[key], default=str)]))
    for note in list(meta.get("notes", []) or []) + list(info.notes):
        ws.append(_wrapped(ws, ["note", str(note)]))
    ws.append(_wrapped(ws, ["printing", "each sheet prints landscape, one page wide, its header on every page; a "
                                        "sheet of more than a few hundred rows prints its first and last rows (its "
                                        "footer says so; the file holds every row)"]))
    page_setup(ws, 2, 0, header_row=None, landscape=False)
    info.sheets.insert(0, "about")


def _write_charts(wb, src, info):
    """Native line charts: loss per iteration and each parameter's path."""
    from openpyxl.chart import Reference, ScatterChart, Series

    ws = wb.create_sheet("charts")
    set_widths(ws, {1: 12})
    page_setup(ws, 10, 60, header_row=None, landscape=False)
    info.sheets.append("charts")
    if src is None or src["last"] < src["first"]:
        ws.append(["No iterations to chart."])
        return
    ws.append(["Charts drawn by the spreadsheet from the '" + src["sheet"] + "' sheet "
               "(they follow any edit of the live sheet)."])

    class _Title:  # Reference needs only the sheet title; write-only sheets are not readable
        def __init__(self, title):
            self.title = title
    data_ws = _Title(src["sheet"])

    def chart(title, ytitle, series):
        ch = ScatterChart()
        ch.title = title
        ch.style = 13
        ch.x_axis.title = "iteration"
        ch.y_axis.title = ytitle
        ch.height, ch.width = 8, 17
        ch.x_axis.delete = False
        ch.y_axis.delete = False
        xref = Reference(data_ws, min_col=src["x_col"], min_row=src["first"], max_row=src["last"])
        for name, column in series:
            yref = Reference(data_ws, min_col=column, min_row=src["first"], max_row=src["last"])
            s = Series(yref, xref, title=xlsx_text(name))
            s.marker.symbol = "none"
            s.smooth = False
            ch.series.append(s)
        return ch

    ws.add_chart(chart("Batch loss per iteration", "loss", [("batch loss", src["loss_col"])] + src.get("extra", [])),
                 "A3")
    by_param = {}
    for lab, column in src["params"].items():
        by_param.setdefault(lab.split("[")[0], []).append((lab, column))
    anchor = 20
    for pname, series in by_param.items():
        ws.add_chart(chart(xlsx_text(f"Path of {pname} (value after each update)"), "value",
                           series[:CHART_MAX_SERIES]), f"A{anchor}")
        anchor += 17


def write_workbook(trace: Trace, path: str | os.PathLike, formulas: bool = False,
                   progress: Callable[[int, int, str], object] | None = None,
                   extra_sheets: dict | None = None) -> WorkbookInfo:
    """Write the workbook and return a :class:`WorkbookInfo` (see :func:`to_excel`).

    ``extra_sheets``: ``{sheet name: DataFrame}`` written after the tables (a distributed
    job's per-rank sheet and findings, :mod:`tracer.ranks.table`)."""
    if not hasattr(trace, "tables"):
        raise TraceInputError(f"trace: expected a tracer.Trace, got {type(trace).__name__}")
    path = Path(path)
    if path.suffix.lower() != ".xlsx":
        raise TraceInputError(f"path: expected a file name ending in .xlsx, got {str(path)!r}")
    info = WorkbookInfo(path=path)
    sheet = reason = None
    if formulas:
        from ._excel_formulas import NotShown, build
        try:
            sheet = build(trace)
            info.formulas = True
            info.checks = sheet.checks
            info.lr_cell = sheet.lr_cell
            info.n_formulas = sheet.n_formulas
        except NotShown as exc:
            reason = str(exc)
    info.reason = reason
    try:  # fail before any work, with a clear message, if the file cannot be written
        path.parent.mkdir(parents=True, exist_ok=True)
        probe_dir(path.parent)
    except OSError as exc:
        raise TraceFileError(f"cannot write the workbook {path}: {exc.strerror or exc}") from None
    try:   # whatever fails, no partial workbook is left behind
        with replacing_file(path) as tmp:
            _fill_workbook(tmp, trace, sheet, info, reason, progress, extra_sheets)
    except OSError as exc:
        raise TraceFileError(f"cannot write the workbook {path}: {exc.strerror or exc}") from None
    return info


def _fill_workbook(tmp, trace, sheet, info, reason, progress, extra_sheets=None) -> None:
    from openpyxl import Workbook

    wb = Workbook(write_only=True)
    try:
        _fill_sheets(wb, trace, sheet, info, reason, progress, extra_sheets)
        wb.save(tmp)
    except BaseException:       # any failure, an interrupt too: end the streams, then re-raise
        _discard_sheets(wb)
        raise


def _discard_sheets(wb) -> None:
    """After a failed save, end the write-only sheets' row streams and remove their
    temporary files now. Left to the garbage collector, each stream's generator would end
    by writing to a closed file ("Exception ignored in ... _write_rows"), and openpyxl's
    temporary files would stay on disk until the process exits."""
    for ws in wb.worksheets:
        rows, writer = getattr(ws, "_rows", None), getattr(ws, "_writer", None)
        try:
            if rows is not None:
                rows.close()
            if writer is not None:
                writer.close()
                writer.cleanup()
        except (OSError, ValueError):    # already closed or removed: nothing left to end
            pass


def _fill_sheets(wb, trace, sheet, info, reason, progress, extra_sheets) -> None:
    if sheet is not None:
        from ._xl_live_sheet import write_live_sheet
        from ._xl_summary import write_summary
        write_live_sheet(wb, trace, sheet, info)
        src = write_summary(wb, trace, sheet, info, int(trace.arrays().inputs.shape[0]))
    else:
        src = write_values_iterations(wb, trace, info, reason, _sheet_parts)
    if progress:
        progress(1, 0, "iterations sheet")
    _write_charts(wb, src, info)
    for name, frame in trace.tables().items():
        _write_frame(wb, name, frame, info, progress)
    for name, frame in (extra_sheets or {}).items():
        _write_frame(wb, name, frame, info, progress)
    _write_about(wb, trace, info, reason)
