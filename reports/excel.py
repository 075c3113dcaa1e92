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
- ``per_iteration`` (formulas only): one row per iteration referring to the live cells,
  what the charts draw.
- ``charts``: native Excel charts, loss per iteration and each parameter's path.
- ``data``, ``steps``, ``samples``, ``params``, ``epochs``: the trace's tables. A table
  longer than Excel's 1,048,576 rows (header included, :data:`EXCEL_MAX_ROWS`) is split
  into ``params_1``, ``params_2``, ...

The workbook is written in openpyxl's streaming (write-only) mode, so memory stays flat
for large traces.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tracer.atomic import probe_dir, replacing_file
from tracer.display import count
from tracer.errors import TraceFileError, TraceInputError

from . import _excel_cells
from ._excel_cells import cell_value, rows_text
from ._safe import xlsx_cell, xlsx_text

#: parameter elements shown as before/after columns on the values ``iterations`` sheet
VALUES_MAX_PARAM_ELEMENTS = 100
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


def to_excel(trace, path, formulas: bool = False, progress=None) -> Path:
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


def _bold_row(ws, values):
    return [xlsx_cell(ws, cell_value(v), bold=True) for v in values]


def _text_row(ws, values):
    """A row of labels and values: strings a spreadsheet would evaluate are written as text."""
    return [xlsx_cell(ws, cell_value(v)) for v in values]


def _write_frame(wb, name, frame, info, progress):
    cols = list(frame.columns)
    text = [frame[c].dtype.kind not in "biufc" for c in cols]
    arrays = [frame[c].to_numpy(dtype=object) if t else frame[c].to_numpy() for c, t in zip(cols, text)]
    for title, lo, hi in _sheet_parts(name, len(frame)):
        ws = wb.create_sheet(title)
        ws.freeze_panes = "A2"
        ws.append(_bold_row(ws, cols))
        for i in range(lo, hi):
            ws.append([xlsx_cell(ws, cell_value(arr[i])) if t else cell_value(arr[i])
                       for arr, t in zip(arrays, text)])
        info.sheets.append(title)
        if progress:
            progress(1, 0, f"sheet {title}")


def _element_labels(trace):
    labels = []
    for pname in trace.param_names:
        shape = trace.param_shape(pname)
        size = int(np.prod(shape, dtype=np.int64))
        for idx in range(size):
            lab = pname if size == 1 else f"{pname}[{','.join(str(i) for i in np.unravel_index(idx, shape))}]"
            labels.append((pname, idx, lab))
    return labels


def _write_about(wb, trace, info, reason):
    ws = wb.create_sheet("about", 0)
    ws.column_dimensions["A"].width = 22
    ws.column_dimensions["B"].width = 100
    meta = trace.meta
    ws.append(_bold_row(ws, ["steptrace trace", f"{meta.get('framework', '?')} run, {count(trace.n_steps, 'iteration')}"]))
    ws.append(_text_row(ws, ["iterations sheet", "live formulas (edit a setting to replay the training)"
                             if info.formulas else "values" + (f" - formulas not written: {reason}" if reason else "")]))
    for key in ("model", "loss", "optimizer", "metrics", "data", "params", "capture", "versions"):
        if meta.get(key) is not None:
            ws.append(_text_row(ws, [key, json.dumps(meta[key], default=str)]))
    for note in meta.get("notes", []) or []:
        ws.append(_text_row(ws, ["note", str(note)]))
    info.sheets.insert(0, "about")


def _write_values_iterations(wb, trace, info, reason):
    """One row per iteration: the by-hand layout with values. Returns chart sources."""
    a = trace.arrays()
    steps = trace.steps
    n = len(steps)
    labels = _element_labels(trace) if a.params else []
    show_params = 0 < len(labels) <= VALUES_MAX_PARAM_ELEMENTS
    logged = [c for c in steps.columns if c.startswith("logged_")]
    headers = ["epoch", "batch", "iteration", "batch size", "rows used (0-based data rows)", "lr", "loss"]
    headers += [c[len("logged_"):] + " (logged)" for c in logged]
    if show_params:
        for _, _, lab in labels:
            headers += [f"{lab} before", f"{lab} after"]
    # rows used per step
    order = np.argsort(a.sample_step, kind="stable")
    s_step, s_row = a.sample_step[order], a.sample_row[order]
    step_ids = steps["step"].to_numpy()
    lo = np.searchsorted(s_step, step_ids, side="left")
    hi = np.searchsorted(s_step, step_ids, side="right")
    pos = {int(s): i for i, s in enumerate(a.param_step)}
    note = None
    if reason:
        note = f"Formulas were not written: {reason}. The values below are the recorded ones."
    elif not show_params and labels:
        note = (f"{len(labels)} parameter elements: too many for columns here "
                f"(limit {VALUES_MAX_PARAM_ELEMENTS}); see the params sheet(s).")
    top = 1 if note else 0
    parts = _sheet_parts("iterations", n + top)
    src = None
    for p_i, (title, plo, phi) in enumerate(parts):
        ws = wb.create_sheet(title)
        ws.column_dimensions["E"].width = 30
        if p_i == 0 and note:
            ws.append(_bold_row(ws, [note]))
        ws.append(_bold_row(ws, headers))
        ws.freeze_panes = f"D{2 + (top if p_i == 0 else 0)}"
        first_data_row = 2 + (top if p_i == 0 else 0)
        rlo = max(plo - top, 0)
        rhi = phi - top
        cols = {c: steps[c].to_numpy() for c in ["epoch", "batch", "step", "loss", "lr"] + logged
                if c in steps.columns}
        bs = steps["batch_size"].to_numpy() if "batch_size" in steps.columns else np.full(n, np.nan)
        for r in range(rlo, rhi):
            row = [int(cols["epoch"][r]), int(cols["batch"][r]), int(cols["step"][r]), cell_value(bs[r]),
                   rows_text(s_row[lo[r]:hi[r]]) if hi[r] > lo[r] else None,
                   cell_value(cols["lr"][r]) if "lr" in cols else None,
                   cell_value(cols["loss"][r]) if "loss" in cols else None]
            row += [xlsx_cell(ws, cell_value(cols[c][r])) for c in logged]
            if show_params:
                k = pos.get(int(cols["step"][r]))
                for pname, idx, _ in labels:
                    if k is None:
                        row += [None, None]
                    else:
                        p = a.params[pname]
                        row += [cell_value(p["before"][k, idx]), cell_value(p["after"][k, idx])]
            ws.append(row)
        info.sheets.append(title)
        if p_i == 0:
            last = first_data_row + (rhi - rlo) - 1
            src = {"sheet": title, "first": first_data_row, "last": last, "x_col": 3, "loss_col": 7,
                   "params": ({lab: 9 + len(logged) + 2 * i for i, (_, _, lab) in enumerate(labels)}
                              if show_params else {})}
    return src


def _write_formula_sheets(wb, trace, sheet, info):
    from openpyxl.cell import WriteOnlyCell
    from openpyxl.styles import Font, PatternFill

    ws = wb.create_sheet("iterations")
    ws.column_dimensions["A"].width = 14
    ws.column_dimensions["C"].width = 12
    ws.freeze_panes = f"H{sheet.header_row + 1}"
    bold = Font(bold=True)
    fill = PatternFill("solid", fgColor="FFF2CC")
    setting_rows = {int(cell.rsplit("$", 1)[1]) for cell in sheet.setting_cells.values()}
    for r, row in enumerate(sheet.rows, start=1):
        if r == sheet.header_row or r <= 1 or (row and row[0] == "setting"):
            ws.append(_bold_row(ws, row))
        elif r in setting_rows:
            cells = []
            for i, v in enumerate(row):
                cell = WriteOnlyCell(ws, value=v)
                if i == 1:
                    cell.fill = fill
                    cell.font = bold
                elif isinstance(v, str):      # a setting's name or note: text, never a formula
                    cell.data_type = "s"
                cells.append(cell)
            ws.append(cells)
        elif r < sheet.header_row:            # the sheet's own notes: text
            ws.append(_text_row(ws, row))
        else:   # below the header, strings are the formulas printed by _excel_formulas
            ws.append([v if isinstance(v, str) else cell_value(v) for v in row])
    info.sheets.append("iterations")
    # per-iteration summary, referring to the live cells
    ws2 = wb.create_sheet("per_iteration")
    steps = trace.steps
    logged = [c for c in steps.columns if c.startswith("logged_")]
    headers = ["iteration", "epoch", "batch", "batch loss (live)"] + \
              [c[len("logged_"):] + " (logged by the framework)" for c in logged] + \
              [f"{lab} after (live)" for lab in sheet.labels]
    ws2.append(_bold_row(ws2, headers))
    ws2.freeze_panes = "B2"
    for s in range(trace.n_steps):
        row = [int(steps["step"].iloc[s]), int(steps["epoch"].iloc[s]), int(steps["batch"].iloc[s]),
               f"=iterations!{sheet.loss_cells[s]}"]
        row += [xlsx_cell(ws2, cell_value(steps[c].iloc[s])) for c in logged]
        row += [f"=iterations!{sheet.after_cells[lab][s]}" for lab in sheet.labels]
        ws2.append(row)
    info.sheets.append("per_iteration")
    return {"sheet": "per_iteration", "first": 2, "last": trace.n_steps + 1, "x_col": 1, "loss_col": 4,
            "params": {lab: 5 + len(logged) + i for i, lab in enumerate(sheet.labels)}}


def _write_charts(wb, src, info):
    """Native line charts: loss per iteration and each parameter's path."""
    from openpyxl.chart import Reference, ScatterChart, Series

    ws = wb.create_sheet("charts")
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
        ch.height, ch.width = 9, 18
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

    ws.add_chart(chart("Batch loss per iteration", "loss", [("batch loss", src["loss_col"])]), "A3")
    by_param = {}
    for lab, column in src["params"].items():
        by_param.setdefault(lab.split("[")[0], []).append((lab, column))
    anchor = 22
    for pname, series in by_param.items():
        ws.add_chart(chart(xlsx_text(f"Path of {pname} (value after each update)"), "value",
                           series[:CHART_MAX_SERIES]), f"A{anchor}")
        anchor += 19


def write_workbook(trace, path, formulas: bool = False, progress=None) -> WorkbookInfo:
    """Write the workbook and return a :class:`WorkbookInfo` (see :func:`to_excel`)."""
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
            _fill_workbook(tmp, trace, sheet, info, reason, progress)
    except OSError as exc:
        raise TraceFileError(f"cannot write the workbook {path}: {exc.strerror or exc}") from None
    return info


def _fill_workbook(tmp, trace, sheet, info, reason, progress) -> None:
    from openpyxl import Workbook

    wb = Workbook(write_only=True)
    if sheet is not None:
        src = _write_formula_sheets(wb, trace, sheet, info)
    else:
        src = _write_values_iterations(wb, trace, info, reason)
    if progress:
        progress(1, 0, "iterations sheet")
    _write_charts(wb, src, info)
    for name, frame in trace.tables().items():
        _write_frame(wb, name, frame, info, progress)
    _write_about(wb, trace, info, reason)
    wb.save(tmp)
