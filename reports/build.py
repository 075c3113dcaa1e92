"""``build_report``: every report at once, with a progress bar on long work.

Why one entry point: ``steptrace report TRACE --xlsx F --html F --plots DIR`` and
notebooks want the same thing - a workbook with live formulas, the step-through page
and the plots - and a long trace takes a while, so the user sees what is being done.
The bar goes to stderr and only when stderr is a terminal (never into logs or pipes).
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from tracer.progress import ProgressBar as Progress

if TYPE_CHECKING:
    import os
    from collections.abc import Sequence

    from tracer.trace import Trace


def build_report(trace: Trace, xlsx: str | os.PathLike | None = None, html: str | os.PathLike | None = None,
                 plots: str | os.PathLike | None = None, progress: bool = True, formulas: bool = True,
                 formats: Sequence[str] = ("png", "svg"), extra_sheets: dict | None = None) -> dict:
    """Write the requested reports and return ``{"xlsx": path, "html": path, "plots": [paths]}``,
    plus ``"warnings"`` (sentences) when the workbook could not be live.

    ``xlsx``: workbook path (live formulas when the model is small enough, see
    :mod:`reports.excel`); ``html``: step-through page path; ``plots``: directory for
    PNG/SVG plots and the fitted-line GIF. ``progress``: show a bar on stderr when it is
    a terminal. ``extra_sheets``: ``{name: DataFrame}`` added to the workbook (a
    distributed job's per-rank sheet).
    """
    from tracer.errors import TraceInputError

    if not (xlsx or html or plots):
        raise TraceInputError("build_report: give at least one of xlsx=, html=, plots=")
    jobs = (5 if plots else 0) + (1 if html else 0) + (6 if xlsx else 0)
    bar = Progress(jobs, enabled=progress)
    written, warnings = {}, []
    try:
        if xlsx:
            from .excel import write_workbook
            bar.step("workbook", 0)
            info = write_workbook(trace, xlsx, formulas=formulas, progress=lambda d, t, what: bar.step(what, d),
                                  extra_sheets=extra_sheets)
            written["xlsx"] = info.path
            if formulas and not info.formulas:
                warnings.append(f"{info.path} holds values, not live formulas: {info.reason}")
        if html:
            from .html import to_html
            bar.step("step-through page", 0)
            written["html"] = to_html(trace, html)
            bar.step("step-through page")
        if plots:
            from .plots import save_all
            written["plots"] = save_all(trace, Path(plots), formats=formats,
                                        progress=lambda d, t, what: bar.step(what, d))
    finally:
        bar.close()
    if warnings:
        written["warnings"] = warnings
    return written
