"""``steptrace run``'s reports are proportionate to the run (issue 16 item 7, issue 11 item 3).

A small run gets its workbook and full CSV; a large one gets no workbook by default (the
summary prints the exact command) and CSV of every K-th step with ``SUBSET.txt``; an
export stopped by a signal leaves no partial file.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import tracer.app.run_reports as rr
from tracer import Trace
from tracer.app.cli import main as cli
from tracer.app.signals import Terminated
from tracer.atomic import replacing_file

from _trace_factories import long_trace, s2_trace


def _saved(trace: Trace, tmp_path: Path) -> tuple[Trace, Path]:
    path = trace.save(tmp_path / "run_1")
    return Trace.load(path), path


def test_a_small_run_gets_its_workbook_and_full_csv(tmp_path):
    trace, path = _saved(s2_trace(), tmp_path)
    assert rr.cells(trace) <= rr.WORKBOOK_CELLS
    written, lines = rr.export_run(trace, path, csv=True, excel="auto")
    assert written == ["csv/", "trace.xlsx"] and lines == []
    assert len(pd.read_csv(path / "csv" / "steps.csv")) == trace.n_steps and not (path / "csv" / "SUBSET.txt").exists()


def test_a_large_run_gets_no_workbook_by_default_and_the_command_for_it(tmp_path, capsys):
    trace, path = _saved(long_trace(iterations=3000), tmp_path)
    assert rr.cells(trace) > rr.WORKBOOK_CELLS
    written, lines = rr.export_run(trace, path, csv=False, excel="auto")
    assert written == [] and not (path / "trace.xlsx").exists()
    (line,) = lines
    command = line.split("write it with: ")[1]
    assert command == f"steptrace export {path} --xlsx {path / 'trace.xlsx'}"
    assert cli(command.split()[1:]) == 0 and (path / "trace.xlsx").stat().st_size > 0   # the command works


def test_excel_always_writes_the_workbook_of_a_large_run(tmp_path):
    trace, path = _saved(long_trace(iterations=3000), tmp_path)
    written, lines = rr.export_run(trace, path, csv=False, excel="always")
    assert written == ["trace.xlsx"] and lines == []


def test_csv_of_a_large_run_is_every_kth_step_documented(tmp_path, monkeypatch):
    trace, path = _saved(long_trace(iterations=1000), tmp_path)
    monkeypatch.setattr(rr, "CSV_CELLS", rr.cells(trace) // 4)
    written, lines = rr.export_run(trace, path, csv=True, excel="never")
    k = 4                                        # ceil(87,800 / (87,800 // 4))
    assert written == ["csv/"] and f"every {k}th step" in lines[0]
    steps = pd.read_csv(path / "csv" / "steps.csv")["step"].tolist()
    assert steps == list(range(1, 1001, k))
    params = pd.read_csv(path / "csv" / "params.csv")
    assert set(params["step"]) == set(steps)
    assert len(pd.read_csv(path / "csv" / "data.csv")) == len(trace.data)     # data whole
    note = (path / "csv" / "SUBSET.txt").read_text()
    assert f"every {k}th recorded step" in note and f"steptrace export {path} --csv {path / 'csv-all'}" in note
    assert cli(["export", str(path), "--csv", str(path / "csv-all")]) == 0
    assert len(pd.read_csv(path / "csv-all" / "steps.csv")) == 1000


def test_every_kth_step_keeps_the_values(tmp_path):
    trace, _ = _saved(long_trace(iterations=50), tmp_path)
    part = rr.every_kth_step(trace, 7)
    assert part.steps["step"].tolist() == list(range(1, 51, 7))
    np.testing.assert_array_equal(part.param_values("w", "after"), trace.param_values("w", "after")[::7])


def test_a_signal_during_an_export_leaves_no_partial_file(tmp_path):
    target = tmp_path / "trace.xlsx"
    target.write_bytes(b"earlier")
    with pytest.raises(Terminated):
        with replacing_file(target) as tmp:
            tmp.write_bytes(b"half a workbook")
            raise Terminated(15)
    assert target.read_bytes() == b"earlier" and sorted(p.name for p in tmp_path.iterdir()) == ["trace.xlsx"]
