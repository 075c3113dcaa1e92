"""Reports on a recorded trace: CSV, Excel (values or live formulas), plots, an HTML step-through.

Why a separate package: reports read a :class:`tracer.Trace` and never touch a framework,
so a trace saved on a training machine can be reported anywhere. Heavy imports
(matplotlib, openpyxl) happen only when the matching function is called.

- :func:`to_csv` - one CSV file per table.
- :func:`to_excel` - a workbook: one sheet per table, an ``iterations`` sheet laid out as a
  learner builds it by hand and, with ``formulas=True``, cells that *are* the math.
- :mod:`reports.plots` - loss, parameter paths, fitted lines, gradient norms (PNG/SVG/GIF).
- :func:`to_html` - one self-contained page that steps through the iterations.
- :func:`build_report` - all of the above at once (what ``steptrace report`` calls).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import os
    from pathlib import Path

    from tracer.trace import Trace


def to_csv(trace: Trace, directory: str | os.PathLike) -> list[Path]:
    """Write one CSV file per table of ``trace`` into ``directory``; returns the paths."""
    from .csv_export import to_csv as _to_csv
    return _to_csv(trace, directory)


def to_excel(trace: Trace, path: str | os.PathLike, formulas: bool = False, **kwargs: Any) -> Path:
    """Write ``trace`` as an .xlsx workbook (``formulas=True``: a live, recalculating sheet)."""
    from .excel import to_excel as _to_excel
    return _to_excel(trace, path, formulas=formulas, **kwargs)


def to_html(trace: Trace, path: str | os.PathLike, **kwargs: Any) -> Path:
    """Write a self-contained HTML page that steps through the iterations of ``trace``."""
    from .html import to_html as _to_html
    return _to_html(trace, path, **kwargs)


def build_report(trace: Trace, xlsx: str | os.PathLike | None = None, html: str | os.PathLike | None = None,
                 plots: str | os.PathLike | None = None, progress: bool = True, **kwargs: Any) -> dict:
    """Write every requested report; returns ``{kind: path or [paths]}`` (see reports.build)."""
    from .build import build_report as _build
    return _build(trace, xlsx=xlsx, html=html, plots=plots, progress=progress, **kwargs)


__all__ = ["to_csv", "to_excel", "to_html", "build_report"]
