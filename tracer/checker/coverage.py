"""Honest verdicts: what was recorded against what was checked.

A run reads ``passed`` only when every recorded quantity of every recorded step was
checked. A loss, prediction or gradient that was recorded but not recomputed (rows
unknown, a program that stops short, a tampered table), or updates checked on only
part of the steps, turns the verdict to INCOMPLETE with the reason, and the summary
says how many steps were checked out of how many were recorded.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .compare import all_nan_rows

if TYPE_CHECKING:
    from ..trace import Trace
    from .report import CheckReport

__all__ = ["account"]


def account(trace: Trace, report: CheckReport, checked: dict) -> None:
    """Compare recorded with checked per quantity; add reasons to ``report.cannot_check``."""
    arrays = trace.arrays()
    steps_col = arrays.steps
    n_recorded = len(np.asarray(steps_col.get("step", [])))
    table = report.table
    report.context["steps_recorded"] = n_recorded
    report.context["steps_checked"] = (int(table.loc[table["status"] != "cannot check", "step"].nunique())
                                       if len(table) else 0)
    if report.context.get("program") is None:
        return                            # the model part was not checked at all: said already
    loss = np.asarray(steps_col.get("loss", []), dtype=np.float64)
    has_loss = int(np.isfinite(loss).sum())
    _compare(report, "loss", has_loss, checked.get("loss", 0))
    if arrays.sample_pred is not None and arrays.sample_step.size:
        recorded_pred = np.unique(arrays.sample_step[~np.isnan(arrays.sample_pred).all(axis=1)]).size
        _compare(report, "prediction", recorded_pred, checked.get("prediction", 0))
    for name, p in arrays.params.items():
        rec = int((~all_nan_rows(p.grad)).sum())
        if rec and not any(name in c for c in report.cannot_check):
            _compare(report, f"gradient of {name}", rec, checked.get("grad:" + name, 0))
    for name, (done, total) in (report.context.get("partial_updates") or {}).items():
        report.cannot_check.append(f"update of {name}: checked at {done} of {total} recorded steps "
                                   "(the optimizer state before the others was not recorded)")


def _compare(report, what, recorded, checked):
    if recorded > checked:
        report.cannot_check.append(f"{what}: recorded at {recorded} step{'' if recorded == 1 else 's'}, checked at {checked}")
