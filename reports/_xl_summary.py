"""The ``per_iteration`` summary sheet of a live workbook: one row per iteration, all live.

Why: the running average is the heart of the S2 lesson and must follow an edit of the
learning rate like everything else. Per iteration: the batch loss (the live sheet's cell),
the running total and row count of the epoch so far and their quotient (what Keras
logs, reset when the epoch changes), the value Keras did log, and the loss of all data
rows with the weights after the update (:mod:`reports._xl_fulldata`); the same for each
logged RMSE/MSE/MAE; then each parameter after the update, named. Every formula cell's
expected value (``summary_checks``) is the engine's, for the tests.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from tracer.display import compact_rows
from tracer.metric_names import LABEL

from ._excel_cells import cell_value
from ._excel_cells import col as letter_of
from ._excel_formulas import Check
from ._safe import xlsx_cell
from ._xl_fulldata import FullData, NotLive
from ._xl_print import bordered, header_cells, page_setup, set_widths, short_names

if TYPE_CHECKING:
    from openpyxl import Workbook

    from tracer.trace import Trace

    from ._excel_formulas import FormulaSheet
    from .excel import WorkbookInfo

__all__ = ["write_summary", "SHEET"]

SHEET = "per_iteration"
#: up to this many iterations every row gets a thin rule (beyond: only the epochs' heavy ones)
BORDERED_ROWS = 2000
_FIXED = ["iteration", "epoch", "batch", "batch rows (n)", "rows used", "lr", "batch loss (live)",
          "loss x rows, epoch so far", "rows, epoch so far", "running mean loss (what Keras logs)",
          "loss logged by the framework", "loss on all rows, weights after the update"]


def _metrics(trace, an) -> list:
    """``(name, kind)`` of each logged RMSE/MSE/MAE the sheet can recompute from its cells."""
    if an.mapped.prediction is None or an.mapped.target is None:
        return []
    out = []
    for m in trace.meta.get("metrics") or []:
        kind = m.get("kind") if m.get("kind") in ("rmse", "mse", "mae") else None
        if kind and "logged_" + m.get("name", "") in trace.steps.columns:
            out.append((m["name"], kind))
    return out


class _Summary:
    """Builds the rows and their expected values (see the module docstring)."""

    def __init__(self, trace, sheet, n_rows):
        self.trace, self.sheet, self.an = trace, sheet, sheet.analysis
        self.metrics = _metrics(trace, self.an)
        self.full = FullData(self.an, n_rows)
        self.checks: list = []
        self.notes: list = []
        self.headers = list(_FIXED)
        for name, kind in self.metrics:
            lab = LABEL.get(kind, name)
            self.headers += [f"{lab} sum of row values, this batch", f"{lab} sum, epoch so far",
                             f"running {lab} (what Keras logs)", f"{name} logged by the framework",
                             f"{lab} on all rows, weights after the update"]
        names = short_names(self.an.labels)
        roles = _roles(trace, self.an.program)
        self.params = [(lab, f"{roles.get(p, '')}{' = ' if p in roles else ''}{lab.replace(p, names[p], 1)} after")
                       for p, (_, labs) in self.an.labels.items() for lab in labs]
        self.headers += [h for _, h in self.params]

    def _full_templates(self) -> tuple[str | None, list]:
        """The all-rows formulas (loss, then each metric) with ``{a<id>}`` placeholders; None if not live."""
        try:
            loss = self.full.formula(self.full.scalar(self.an.mapped.loss))
            mets = [self.full.formula(self.full.metric(kind, self.an.mapped.prediction, self.an.mapped.target))
                    for _, kind in self.metrics]
            return loss, mets
        except NotLive as exc:
            self.notes.append(f"the all-rows columns hold the engine's values, not formulas: {exc}")
            return None, [None] * len(self.metrics)

    def _placeholders(self, s: int) -> dict:
        import re
        after = self.sheet.after_cells
        return {k: "iterations!" + re.sub(r"([A-Z]+)(\d+)", r"$\1$\2", after[lab][s - 1])
                for k, lab in self.full.params.items()}


def _roles(trace, program) -> dict:
    from tracer.answer_text import roles
    try:
        return roles(trace, program)
    except Exception:   # noqa: BLE001 - a name is a nicety
        return {}


def _expected(trace, an, metrics):
    """Engine values per step: batch loss, metric batch totals, all-rows loss and metrics after."""
    from tracer.checker.recompute import full_data_series
    from tracer.math.metrics import get_metric
    n = trace.n_steps
    by = {}
    for c in an.mapped.cols.items:
        by.setdefault(c.quantity, []).append(c)
    loss_col = next(c for c in an.mapped.cols.items if c.quantity == "loss")
    loss = np.array([an.values.column(loss_col, s) for s in range(1, n + 1)])
    preds = [an.mapped.cols.of(p) for p in an.mapped.prediction] if metrics else []
    targs = [an.mapped.cols.of(t) for t in an.mapped.target] if metrics else []
    totals = {}
    for name, kind in metrics:
        per = []
        for s in range(1, n + 1):
            d = np.stack([np.asarray(an.values.column(p, s)) - np.asarray(an.values.column(t, s))
                          for p, t in zip(preds, targs)], axis=-1)
            per.append(float(np.sum(np.mean(d ** 2 if kind != "mae" else np.abs(d), axis=-1))))
        totals[name] = np.array(per)
    fd = full_data_series(trace, "after", an.program)
    full = {"loss": fd.loss}
    yt = np.asarray(trace.arrays().targets, dtype=np.float64)[None]
    for name, kind in metrics:
        total, count = get_metric({"kind": kind}).batch_terms(fd.prediction, np.broadcast_to(yt, fd.prediction.shape))
        full[name] = get_metric({"kind": kind}).result(total, count)
    return loss, totals, full


def write_summary(wb: Workbook, trace: Trace, sheet: FormulaSheet, info: WorkbookInfo, n_rows: int) -> dict:
    """Write the sheet; returns the chart source ``{sheet, first, last, x_col, loss_col, params, extra}``."""
    sm = _Summary(trace, sheet, n_rows)
    ws = wb.create_sheet(SHEET)
    set_widths(ws, {1: 9, 2: 7, 3: 7, 4: 8, 5: 22}, default=13, n_cols=len(sm.headers))
    ws.freeze_panes = "D2"
    ws.append(header_cells(ws, sm.headers))
    loss, totals, full = _expected(trace, sm.an, sm.metrics)
    loss_t, met_t = sm._full_templates()
    steps = trace.steps
    L = {h: letter_of(i + 1) for i, h in enumerate(sm.headers)}
    a = trace.arrays()
    order = np.argsort(a.sample_step, kind="stable")
    rows_of = np.split(a.sample_row[order], np.searchsorted(a.sample_step[order], np.arange(2, trace.n_steps + 1)))
    run = {"loss": 0.0, "n": 0.0, **{name: 0.0 for name, _ in sm.metrics}}
    for s in range(1, trace.n_steps + 1):
        r, (r0, r1) = s + 1, sheet.blocks[s - 1]
        new_epoch = s == 1 or steps["epoch"].iloc[s - 1] != steps["epoch"].iloc[s - 2]
        if new_epoch:
            run = {k: 0.0 for k in run}
        row = _fixed_row(ws, sm, s, r, r0, steps, rows_of, L, new_epoch, loss_t)
        run["n"] += r1 - r0 + 1
        run["loss"] += loss[s - 1] * (r1 - r0 + 1)
        sm.checks += [Check(f"{L[_FIXED[7]]}{r}", "running loss total", s, run["loss"]),
                      Check(f"{L[_FIXED[9]]}{r}", "running loss", s, run["loss"] / run["n"])]
        if loss_t:
            sm.checks.append(Check(f"{L[_FIXED[11]]}{r}", "all rows loss after", s, float(full["loss"][s - 1])))
        else:
            row[11] = cell_value(full["loss"][s - 1])
        for (name, kind), tpl in zip(sm.metrics, met_t):
            run[name] += totals[name][s - 1]
            row += _metric_cells(ws, sm, (s, r, r0, r1, new_epoch), name, kind, tpl, run, full,
                                 totals[name][s - 1], L)
        row += [f"=iterations!{sheet.after_cells[lab][s - 1]}" for lab, _ in sm.params]
        heavy = r1 in sheet.epoch_ends
        ws.append(bordered(ws, row, heavy) if heavy or trace.n_steps <= BORDERED_ROWS else row)
    page_setup(ws, len(sm.headers), trace.n_steps + 1)
    info.summary_checks = sm.checks
    info.notes += sm.notes
    info.sheets.append(SHEET)
    return {"sheet": SHEET, "first": 2, "last": trace.n_steps + 1, "x_col": 1, "loss_col": 7,
            "params": {lab: len(sm.headers) - len(sm.params) + 1 + i for i, (lab, _) in enumerate(sm.params)},
            "extra": [("running mean loss (what Keras logs)", 10), ("loss on all rows after the update", 12)]}


def _fixed_row(ws, sm, s, r, r0, steps, rows_of, L, new_epoch, loss_t) -> list:
    """The first twelve cells of iteration ``s``'s row."""
    sheet, letters = sm.sheet, sm.sheet.letters
    prev = f"IF({L['epoch']}{r}={L['epoch']}{r - 1},{{c}}{r - 1},0)+" if not new_epoch else ""
    logged = steps["logged_loss"].iloc[s - 1] if "logged_loss" in steps.columns else None
    n_ref = f"iterations!${letters['n (batch rows)']}${r0}"
    row = [s, int(steps["epoch"].iloc[s - 1]), int(steps["batch"].iloc[s - 1]), f"={n_ref}",
           xlsx_cell(ws, compact_rows(rows_of[s - 1])), f"=iterations!${letters['lr']}${r0}",
           f"=iterations!{sheet.loss_cells[s - 1]}",
           "=" + prev.format(c=L[_FIXED[7]]) + f"{L[_FIXED[6]]}{r}*{L[_FIXED[3]]}{r}",
           "=" + prev.format(c=L[_FIXED[8]]) + f"{L[_FIXED[3]]}{r}",
           f"={L[_FIXED[7]]}{r}/{L[_FIXED[8]]}{r}", cell_value(logged)]
    row.append(None if not loss_t else _array(ws, f"{L[_FIXED[11]]}{r}", loss_t.format(**sm._placeholders(s))))
    return row


def _metric_cells(ws, sm, where, name, kind, tpl, run, full, batch_total, L) -> list:
    """Batch sum of row values (SUMPRODUCT over the block), the epoch's sum, the running value,
    the logged value, all rows after the update (``where``: step, row, block rows, new epoch)."""
    s, r, r0, r1, new_epoch = where
    lab = LABEL.get(kind, name)
    c_batch, c_sum, c_run, c_full = (L[h] for h in (f"{lab} sum of row values, this batch",
                                                    f"{lab} sum, epoch so far", f"running {lab} (what Keras logs)",
                                                    f"{lab} on all rows, weights after the update"))
    preds = [sm.an.mapped.cols.of(p).letter for p in sm.an.mapped.prediction]
    targs = [sm.an.mapped.cols.of(t).letter for t in sm.an.mapped.target]
    m = len(preds)
    diff = [f"(iterations!{p}{r0}:{p}{r1}-iterations!{t}{r0}:{t}{r1})" for p, t in zip(preds, targs)]
    terms = "+".join(f"SUMPRODUCT({d}^2)" if kind != "mae" else f"SUMPRODUCT(ABS({d}))" for d in diff)
    batch = f"=({terms})/{m}"
    prev = "" if new_epoch else f"IF({L['epoch']}{r}={L['epoch']}{r - 1},{c_sum}{r - 1},0)+"
    rows = L[_FIXED[8]]
    value = f"=SQRT({c_sum}{r}/{rows}{r})" if kind == "rmse" else f"={c_sum}{r}/{rows}{r}"
    logged = sm.trace.steps["logged_" + name].iloc[s - 1]
    mean = run[name] / run["n"]
    sm.checks += [Check(f"{c_batch}{r}", f"{name} batch sum", s, float(batch_total)),
                  Check(f"{c_sum}{r}", f"{name} running sum", s, run[name]),
                  Check(f"{c_run}{r}", f"running {name}", s, float(np.sqrt(mean) if kind == "rmse" else mean))]
    full_cell = cell_value(full[name][s - 1]) if tpl is None else \
        _array(ws, f"{c_full}{r}", tpl.format(**sm._placeholders(s)))
    if tpl is not None:
        sm.checks.append(Check(f"{c_full}{r}", f"{name} all rows after", s, float(full[name][s - 1])))
    return [batch, "=" + prev + f"{c_batch}{r}", value, cell_value(logged), full_cell]


def _array(ws, ref: str, text: str):
    """An array formula (Excel evaluates IF over whole ranges only in one)."""
    from openpyxl.worksheet.formula import ArrayFormula
    return ArrayFormula(ref=ref, text=text)

