"""The command line: demo end to end, check/explain/export, exit codes."""
import subprocess
import sys

import numpy as np
import pytest

from tracer.app.cli import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_OK, main
from tracer.app.examples import s0_data
from hooks.numpy import NumpyTracer


def run_cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "tracer", *map(str, args)], capture_output=True,
                          text=True, cwd=cwd, timeout=300)


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    proc = run_cli("demo", "--out", out)
    assert proc.returncode == EXIT_OK, proc.stdout + proc.stderr
    return out, proc.stdout


def test_demo_end_to_end(demo_dir):
    out, stdout = demo_dir
    assert "steptrace check: OK - 100 steps" in stdout
    assert "identified loss: sum of squares / 2 / n" in stdout
    assert "lr 0.02" in stdout
    assert "13.09844702" in stdout
    assert (out / "s0.trace" / "meta.json").is_file()
    assert (out / "s0.xlsx").is_file()
    assert (out / "csv" / "steps.csv").is_file()
    assert "Step 1 (epoch 1, batch 1)" in (out / "explain_step1.txt").read_text()


def test_check_explain_export_commands(demo_dir, tmp_path):
    out, _ = demo_dir
    trace = out / "s0.trace"
    proc = run_cli("check", trace)
    assert proc.returncode == EXIT_OK and "OK - 100 steps" in proc.stdout
    proc = run_cli("explain", trace, "--step", 100)
    assert proc.returncode == EXIT_OK and "Step 100 (epoch 100, batch 1)" in proc.stdout
    proc = run_cli("export", trace, "--csv", tmp_path / "csv", "--xlsx", tmp_path / "t.xlsx")
    assert proc.returncode == EXIT_OK, proc.stderr
    assert (tmp_path / "csv" / "params.csv").is_file() and (tmp_path / "t.xlsx").is_file()


def test_exit_codes_tell_outcomes_apart(tmp_path, capsys):
    # failed checks -> 1
    x, targets, weights, biases = s0_data()
    tr = NumpyTracer(params=["weights", "biases"], predictions="outputs", loss="loss",
                     inputs=x, targets=targets, lr=0.02)
    for i in tr.range(3):
        outputs = x @ weights + biases
        loss = np.sum((outputs - targets) ** 2) / 2 / 1000
        weights = weights + 0.02 * x.T @ (outputs - targets) / 1000     # sign error
        biases = biases - 0.02 * np.sum(outputs - targets) / 1000
    path = tr.trace.save(tmp_path / "bad.trace")
    assert main(["check", str(path)]) == EXIT_FAILED
    text = capsys.readouterr().out
    assert "FAILED" in text and "sign error" in text and "weights" in text
    # bad input -> 2, one line, no traceback
    assert main(["check", str(tmp_path / "missing.trace")]) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert "does not exist" in err and "Traceback" not in err
    assert main(["explain", str(path), "--step", "99"]) == EXIT_BAD_INPUT
    assert "step" in capsys.readouterr().err
    assert main(["export", str(path)]) == EXIT_BAD_INPUT
    blocker = tmp_path / "blocker"
    blocker.write_text("")
    assert main(["export", str(path), "--csv", str(blocker / "x")]) == EXIT_BAD_INPUT
