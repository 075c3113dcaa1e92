"""What ``steptrace run`` writes after the script: reports proportionate to the run.

Why: writing a workbook of a big run took longer than the training itself (25 minutes
for a Keras guide, leaving ``trace.xlsx.partial``), and its CSV ran to 904 MB. By
default a run gets its trace and ``check.txt``; the workbook only when it is small
(:data:`WORKBOOK_CELLS`), CSV in full only when it is moderate (:data:`CSV_CELLS`),
else every K-th step with a ``SUBSET.txt`` saying which and the command for the rest.
``--excel`` asks for the workbook whatever its size. Every file goes through a
temporary name, so an interrupted export leaves no partial file.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ..atomic import reason, replacing_file
from ..trace import Trace

__all__ = ["WORKBOOK_CELLS", "CSV_CELLS", "cells", "every_kth_step", "check_run", "export_run"]

#: the workbook is written by default only up to this many table cells
WORKBOOK_CELLS = 50_000
#: CSV is written in full up to this many cells; past it, every K-th step
CSV_CELLS = 2_000_000
_STEP_TABLES = ("steps", "samples", "params")


def cells(trace: Trace) -> int:
    """Table cells the trace's exports hold (rows x columns over every table)."""
    return int(sum(len(t) * max(1, len(t.columns)) for t in trace.tables().values()))


def every_kth_step(trace: Trace, k: int) -> Trace:
    """The trace cut to steps 1, 1+k, 1+2k, ... (by position; ``data`` and ``epochs`` whole)."""
    steps = trace.steps
    kept = steps["step"].to_numpy()[::k]
    frames = {name: trace.tables()[name] for name in ("data", "epochs")}
    for name in _STEP_TABLES:
        table = trace.tables()[name]
        frames[name] = table[np.isin(table["step"].to_numpy(), kept)].reset_index(drop=True)
    return Trace(frames=frames, meta=trace.meta)


def check_run(trace: Trace, path: Path | None) -> tuple[str, str]:
    """``(verdict, summary)`` of the run; ``check.txt`` written beside it (atomically).
    A run read back in part (``trace.part``) says which steps were left on disk and the
    command that checks them, in the summary and in ``check.txt``."""
    from .. import check
    from ..program.scratch import drop_kept
    try:
        report = check(trace)
        summary, verdict = report.summary(), report.verdict
        drop_kept()     # checked once: the arena's blocks are not kept through the exports
    except Exception as exc:  # the checker's own failure is the run's report, not a crash
        return "error", f"steptrace check: could not run: {type(exc).__name__}: {exc}"
    part = getattr(trace, "part", None)
    if part is not None and not part.whole:
        summary += f"\nnot all checked: {part.said}"
    if path is not None:
        try:
            with replacing_file(path / "check.txt") as tmp:
                tmp.write_text(summary + "\n")
        except OSError as exc:
            summary += f"\n(check.txt not written: {reason(exc)})"
    return verdict, summary


def export_run(trace: Trace, path: Path, *, csv: bool, excel: str) -> tuple[list[str], list[str]]:
    """Write the run's CSV and workbook as the options and its size allow.

    ``excel``: ``"auto"`` (only a small run), ``"always"`` or ``"never"``. Returns
    ``(files written, lines to show)``; each line skipped names the command for it.
    """
    import reports
    written, lines = [], []
    part = getattr(trace, "part", None)
    if part is not None and not part.whole:     # its exports would miss the steps left on disk
        return [], [f"CSV and workbook not written: the run was read back in part ({f'steps {part.lo}-{part.hi}' if part.hi >= part.lo else 'no step'} in full); "
                    f"write every step with: steptrace export {path} --csv {path / 'csv'}"]
    size = cells(trace)
    if csv:
        lines += _write_csv(reports, trace, path, size, written)
    if excel == "always" or (excel == "auto" and size <= WORKBOOK_CELLS):
        try:
            reports.to_excel(trace, path / "trace.xlsx")
            written.append("trace.xlsx")
        except Exception as exc:  # an export failing leaves the trace and the check as they are
            lines.append(f"Excel export failed: {type(exc).__name__}: {exc}")
    elif excel == "auto":
        lines.append(f"workbook not written: {size:,} cells is more than {WORKBOOK_CELLS:,}; write it with: "
                     f"steptrace export {path} --xlsx {path / 'trace.xlsx'}")
    return written, lines


def _write_csv(reports, trace: Trace, path: Path, size: int, written: list[str]) -> list[str]:
    k = max(1, math.ceil(size / CSV_CELLS))
    part = trace if k == 1 else every_kth_step(trace, k)
    try:
        reports.to_csv(part, path / "csv")
        if k > 1:
            _subset_note(path, trace.n_steps, part.n_steps, k)
        written.append("csv/")
    except Exception as exc:  # an export failing leaves the trace and the check as they are
        return [f"CSV export failed: {type(exc).__name__}: {exc}"]
    if k == 1:
        return []
    return [f"CSV holds every {k}th step ({part.n_steps:,} of {trace.n_steps:,}: {size:,} cells in all); "
            f"the whole run: steptrace export {path} --csv {path / 'csv-all'}"]


def _subset_note(path: Path, n_steps: int, kept: int, k: int) -> None:
    text = (f"These CSV files hold every {k}th recorded step: the 1st, {k + 1}th, {2 * k + 1}th ... "
            f"({kept} of {n_steps} steps); data.csv and epochs.csv are whole.\n"
            f"The run is too large to export in full by default. Every step:\n"
            f"  steptrace export {path} --csv {path / 'csv-all'}\n")
    with replacing_file(path / "csv" / "SUBSET.txt") as tmp:
        tmp.write_text(text)
