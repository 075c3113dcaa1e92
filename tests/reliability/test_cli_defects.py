"""The command line's small defects of issue 11 stay fixed: each is one line or quiet, never a traceback.

Why real subprocesses: a BrokenPipeError appears only when a real reader closes the
pipe, and the traceback of a bad ``--table`` only on the real command line.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tracer.app.cli import main
from tracer.app.run_options import parse_size

from _hostile import clean_trace

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}


@pytest.fixture(scope="module")
def good(tmp_path_factory) -> Path:
    return clean_trace().save(tmp_path_factory.mktemp("good") / "good.trace")


def test_check_into_a_closed_pipe_is_quiet(good):
    """``steptrace check T | head -1``: the reader is gone before steptrace writes (closed at
    once, so the write surely fails): no BrokenPipeError, the shell's SIGPIPE status."""
    check = subprocess.Popen([sys.executable, "-m", "tracer", "check", str(good)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=ENV, cwd=ROOT)
    check.stdout.close()                         # what `head -1` does after its line
    err = check.stderr.read().decode()
    assert check.wait(timeout=120) == 141, err
    assert "BrokenPipe" not in err and "Traceback" not in err and "Exception ignored" not in err, err
    shell = subprocess.run(f"{sys.executable} -m tracer check {good} | head -1", shell=True, env=ENV,
                           cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert len(shell.stdout.splitlines()) == 1 and "Error" not in shell.stderr, shell.stderr


@pytest.mark.parametrize("where", ["/proc/x.csv", "{tmp}/missing/dir/x.csv", "{tmp}"])
def test_a_table_path_that_cannot_be_written_is_one_line_exit_2(good, tmp_path, capsys, where):
    path = where.format(tmp=tmp_path)
    assert main(["check", str(good), "--table", path]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("steptrace: error: --table: cannot write"), err
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]     # no temporary left


def test_a_table_path_on_the_real_command_line(good):
    done = subprocess.run([sys.executable, "-m", "tracer", "check", str(good), "--table", "/proc/x.csv"],
                          env=ENV, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr


def test_the_table_is_still_written(good, tmp_path, capsys):
    out = tmp_path / "table.csv"
    assert main(["check", str(good), "--table", str(out)]) in (0, 1, 3)
    assert out.read_text().startswith("step") or out.stat().st_size > 0


def test_zero_means_zero_and_unlimited_is_spelled_out():
    assert parse_size("0") == 0 and parse_size("0M") == 0
    assert parse_size("unlimited") is None and parse_size("none") is None
