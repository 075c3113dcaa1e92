"""The command line: demo end to end, check/explain/export, exit codes."""
import subprocess
import sys

import numpy as np
import pytest

from tracer.app.cli import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_INCOMPLETE, EXIT_OK, main
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


@pytest.mark.slow
def test_demo_and_report_workbooks_are_live(demo_dir, tmp_path):
    """The demo's trace declares neither loss nor lr: the workbook uses what the checker identified."""
    import zipfile

    out, stdout = demo_dir
    assert "s0.xlsx: live formulas" in stdout
    proc = run_cli("report", out / "s0.trace", "--xlsx", tmp_path / "r.xlsx")
    assert proc.returncode == EXIT_OK and "warning" not in proc.stderr, proc.stderr
    with zipfile.ZipFile(out / "s0.xlsx") as a, zipfile.ZipFile(tmp_path / "r.xlsx") as b:
        sheet = "xl/worksheets/sheet2.xml"   # iterations: the same live sheet, formula for formula
        assert a.read(sheet) == b.read(sheet) and b"<f>SUMPRODUCT(" in b.read(sheet)


@pytest.mark.slow
def test_demo_workbook_recalculates_and_replays_an_lr_edit(demo_dir, tmp_path):
    """LibreOffice recalculates the demo's workbook to the checker's numbers; setting the lr cell
    to 0.01 replays training: every cell equals an lr=0.01 run's, every update changes."""
    from _lo import cell, profile, set_number, sheet_csv
    from reports._excel_formulas import build
    from tracer import Trace
    from tracer.app.examples import s0_numpy

    out, _ = demo_dir
    lo = profile(tmp_path / "lo")
    sheet = build(Trace.load(out / "s0.trace"))
    for path, want in ((out / "s0.xlsx", sheet), (tmp_path / "edited.xlsx", build(s0_numpy(learning_rate=0.01)[0]))):
        if path.name == "edited.xlsx":
            set_number(out / "s0.xlsx", path, "iterations", sheet.lr_cell, 0.01)
        grid = sheet_csv(path, 2, tmp_path / path.stem, lo)
        assert [c.cell for c in want.checks] == [c.cell for c in sheet.checks]
        bad = [c for c in want.checks if abs(cell(grid, c.cell) - c.expected) > 1e-9 * abs(c.expected) + 1e-9]
        assert not bad, f"{len(bad)} of {len(want.checks)} cells differ, first {bad[:3]}"
    old = {c.cell: c.expected for c in sheet.checks if c.quantity == "after"}
    changed = {c.step for c in want.checks if c.quantity == "after" and abs(c.expected - old[c.cell]) > 1e-6}
    assert changed == set(range(1, 101))


def test_export_formulas_keeps_its_promise_or_says_why(tmp_path):
    """No loss recorded and none declared: --formulas exits 3 with the reason and the remedy;
    the remedy (NumpyTracer(loss_spec=...)) gives a live workbook."""
    x, targets, weights0, biases0 = s0_data()
    paths = []
    for spec in (None, {"name": "squared_error", "divide_by": [2, "n"]}):
        weights, biases = weights0, biases0
        tr = NumpyTracer(params=["weights", "biases"], predictions="outputs", inputs=x, targets=targets,
                         lr=0.02, loss_spec=spec)
        for i in tr.range(3):
            outputs = x @ weights + biases
            weights = weights - 0.02 * x.T @ (outputs - targets) / 1000
            biases = biases - 0.02 * np.sum(outputs - targets) / 1000
        paths.append(tr.trace.save(tmp_path / f"t{len(paths)}.trace"))
    proc = run_cli("export", paths[0], "--xlsx", tmp_path / "a.xlsx", "--formulas")
    assert proc.returncode == EXIT_INCOMPLETE, proc.stdout + proc.stderr
    assert "holds values, not live formulas" in proc.stderr and "loss_spec=" in proc.stderr
    assert (tmp_path / "a.xlsx").is_file()
    proc = run_cli("export", paths[1], "--xlsx", tmp_path / "b.xlsx", "--formulas")
    assert proc.returncode == EXIT_OK and "live formulas" in proc.stdout, proc.stderr
    assert "exit code is 3 (incomplete)" in " ".join(run_cli("export", "--help").stdout.split())


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
