"""Exports interrupted by a full disk leave the earlier files and no partial ones.

The issue saw partial CSV and 0-byte HTML files after a disk filled. Each writer is made
to fail half-way with ENOSPC (after writing some bytes); the files of the earlier export
must be byte for byte as they were and no temporary file may remain. The clean twin (an
export over an earlier one) replaces the files.
"""
from __future__ import annotations

import errno
import os
from pathlib import Path

import pandas as pd
import pytest

import reports
from reports import plots
from tracer.errors import TraceFileError

from _hostile import clean_trace


def _no_space(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def _snapshot(directory: Path) -> dict:
    return {p.name: p.read_bytes() for p in directory.iterdir()}


def test_html_page(tmp_path, monkeypatch):
    page = reports.to_html(clean_trace(), tmp_path / "run.html")
    before = _snapshot(tmp_path)
    real = Path.write_text

    def half_then_full(self, text, *a, **k):
        real(self, text[: len(text) // 2], *a, **k)
        _no_space()
    monkeypatch.setattr(Path, "write_text", half_then_full)
    with pytest.raises(TraceFileError, match="No space left on device"):
        reports.to_html(clean_trace(), page)
    monkeypatch.undo()
    assert _snapshot(tmp_path) == before


def test_csv_files(tmp_path, monkeypatch):
    out = tmp_path / "csv"
    reports.to_csv(clean_trace(), out)
    before = _snapshot(out)
    calls = []
    real = pd.DataFrame.to_csv

    def third_fails(self, path, *a, **k):
        calls.append(path)
        if len(calls) == 3:
            Path(path).write_text("partial")
            _no_space()
        return real(self, path, *a, **k)
    monkeypatch.setattr(pd.DataFrame, "to_csv", third_fails)
    with pytest.raises(TraceFileError, match="No space left on device"):
        reports.to_csv(clean_trace(), out)
    monkeypatch.undo()
    assert set(_snapshot(out)) == set(before)          # no temporary or partial file
    assert _snapshot(out)["samples.csv"] == before["samples.csv"]


@pytest.mark.filterwarnings("error::pytest.PytestUnraisableExceptionWarning")
def test_workbook(tmp_path, monkeypatch):
    """A failed save leaves the earlier workbook, no partial file, none of openpyxl's
    temporary sheet files, and no sheet stream that ends by writing to a closed file."""
    import gc

    from openpyxl.workbook.workbook import Workbook
    from openpyxl.worksheet._writer import ALL_TEMP_FILES
    book = reports.to_excel(clean_trace(), tmp_path / "run.xlsx")
    before, temp_files = _snapshot(tmp_path), list(ALL_TEMP_FILES)

    def half_saved(self, filename):
        Path(filename).write_bytes(b"PK\x03\x04 partial")
        _no_space()
    monkeypatch.setattr(Workbook, "save", half_saved)
    with pytest.raises(TraceFileError, match="cannot write the workbook .*No space left on device"):
        reports.to_excel(clean_trace(), book)
    monkeypatch.undo()
    assert _snapshot(tmp_path) == before
    assert ALL_TEMP_FILES == temp_files and all(os.path.exists(f) for f in temp_files)
    gc.collect()            # the abandoned sheets' streams end here, inside this test


def test_plots(tmp_path, monkeypatch):
    from matplotlib.figure import Figure
    paths = plots.plot_loss(clean_trace(), tmp_path / "loss")
    before = _snapshot(tmp_path)
    monkeypatch.setattr(Figure, "savefig", lambda self, fname, **k: (Path(fname).write_bytes(b"\x89PNG"), _no_space()))
    with pytest.raises(TraceFileError, match="No space left on device"):
        plots.plot_loss(clean_trace(), tmp_path / "loss")
    monkeypatch.undo()
    assert _snapshot(tmp_path) == before and [p.name for p in paths] == ["loss.png", "loss.svg"]


def test_clean_twin_replaces_earlier_exports(tmp_path):
    first = reports.to_html(clean_trace(), tmp_path / "run.html").read_text()
    trace = clean_trace()
    trace.meta["framework"] = "second"
    assert "second run" in reports.to_html(trace, tmp_path / "run.html").read_text() != first
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.html"]


def test_exports_never_write_through_a_planted_link(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("keep")
    (tmp_path / "run.html").symlink_to(victim)
    with pytest.raises(TraceFileError, match="symbolic link"):
        reports.to_html(clean_trace(), tmp_path / "run.html")
    out = tmp_path / "csv"
    out.mkdir()
    (out / "steps.csv").symlink_to(victim)
    with pytest.raises(TraceFileError, match="symbolic link"):
        reports.to_csv(clean_trace(), out)
    assert victim.read_text() == "keep"
