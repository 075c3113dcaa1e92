"""``steptrace check RUN`` and ``steptrace report RUN`` on a distributed job's run directory.

Why apart from :mod:`tracer.app.cli`: a run directory of ``rank=N`` traces is not a
trace; these commands read every rank, check the job (:func:`tracer.ranks.check.check_ranks`)
and report the merged trace with a per-rank sheet, keeping the single-trace commands
untouched.
"""
from __future__ import annotations

import sys
from pathlib import Path

from ..ranks.files import is_rank_run

__all__ = ["is_rank_run", "check_run", "report_run"]


def check_run(path: Path) -> int:
    """Print the job's check (every rank, merged, cross-rank); exit 0 passed, 1 failed."""
    from ..ranks.check import check_ranks
    report = check_ranks(path)
    print(report.summary())
    return 0 if report.ok else 1


def report_run(path: Path, xlsx: str | None = None, html: str | None = None, plots: str | None = None) -> dict:
    """Reports of the merged job; the workbook adds the ``ranks`` and ``rank_findings`` sheets."""
    from reports import build_report

    from ..ranks.check import check_ranks
    from ..ranks.files import load_ranks
    from ..ranks.table import findings_table, rank_table
    traces = load_ranks(path)
    report = check_ranks(traces)
    sheets = {"ranks": rank_table(traces), "rank_findings": findings_table(report.findings)}
    return build_report(report.merged_trace, xlsx=xlsx, html=html, plots=plots, progress=sys.stderr.isatty(),
                        extra_sheets=sheets)
