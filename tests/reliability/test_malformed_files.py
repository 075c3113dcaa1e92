"""Malformed or foreign trace files: one TraceFileError line naming the file, never a traceback.

Through the command line (``python -m tracer check PATH``) the same files exit with code
2 ("bad input") and one line on stderr. The clean twin (the unchanged copy) loads,
checks and exits 0.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tracer import Trace
from tracer.app.cli import main
from tracer.errors import TraceFileError

from _corpus import CASES, make_case
from _hostile import clean_trace

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def good(tmp_path_factory) -> Path:
    return clean_trace().save(tmp_path_factory.mktemp("good") / "good.trace")


def _names_the_file(text: str, case: Path) -> bool:
    return str(case) in text or case.name in text


@pytest.mark.parametrize("name", sorted(CASES))
def test_each_malformed_file_gives_one_line_naming_it(good, tmp_path, name, capsys):
    case = make_case(good, name, tmp_path / "case.trace")
    with pytest.raises(TraceFileError) as err:
        Trace.load(case)
    text = str(err.value)
    assert "\n" not in text and 0 < len(text) < 600 and _names_the_file(text, case), text
    assert main(["check", str(case)]) == 2
    err_lines = capsys.readouterr().err.splitlines()
    assert len(err_lines) == 1 and err_lines[0].startswith("steptrace: error: "), err_lines


def test_messages_name_the_field(good, tmp_path):
    case = make_case(good, "shape-string", tmp_path / "c1.trace")
    with pytest.raises(TraceFileError) as err:
        Trace.load(case)
    assert str(err.value) == f'{case}/meta.json: meta.params[0].shape: expected a list of non-negative integers, got "abc"'
    case = make_case(good, "params-before-dropped", tmp_path / "c2.trace")
    with pytest.raises(TraceFileError, match=r"c2.trace/params.parquet: column 'before' is missing$"):
        Trace.load(case)


def test_clean_twin_loads_and_checks(good, capsys):
    trace = Trace.load(good)
    assert trace.n_steps == 4 and trace.param_names == ["w", "b", "extra"]
    assert main(["check", str(good)]) == 0
    assert "OK" in capsys.readouterr().out


@pytest.mark.parametrize("name", ["meta-binary", "deep-nesting-100k", "shape-huge", "params-truncated-tail",
                                  "params-before-text", "foreign-directory"])
def test_the_real_command_line_exits_2_with_one_line(good, tmp_path, name):
    case = make_case(good, name, tmp_path / "case.trace")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", "tracer", "check", str(case)], capture_output=True, text=True,
                          env=env, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.splitlines()) == 1 and proc.stderr.startswith("steptrace: error: ")
