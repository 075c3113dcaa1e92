"""``steptrace run --numpy-params``: NumPy scripts traced with no edit (issue 13, item 8).

Seed 000's NumPy script, pasted as the page gives it (tests/scripts/s0_numpy.py), runs
under ``python -m tracer run`` in a subprocess: same stdout as plain Python, the golden
numbers of S0, bit-identical parameters, a passing check, CSV and Excel written. Smaller
scripts run in-process through :class:`hooks.autotrace.AutoTrace` to pin down the
trace-function mechanics: loops inside functions, mini-batch rows found by content,
``break``, an exception, a debugger's trace function kept working.
"""
from __future__ import annotations

import os
import runpy
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import tracer
import tracer.app.run as run
from hooks.autotrace import AutoTrace
from hooks.autotrace.numpy_loop import find_loop
from hooks.autotrace.numpy_steps import NumpyOptions
from tracer import Trace
from tracer.app.examples import s0_data

TESTS = Path(__file__).resolve().parents[1]
ROOT = TESTS.parent
SCRIPT = TESTS / "scripts" / "s0_numpy.py"
ENV = {**os.environ, "MPLBACKEND": "Agg",
       "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}


def untraced_s0(iterations=100, lr=0.02):
    x, targets, weights, biases = s0_data()
    for i in range(iterations):
        outputs = np.dot(x, weights) + biases
        deltas = outputs - targets
        deltas_scaled = deltas / 1000
        weights = weights - lr * np.dot(x.T, deltas_scaled)
        biases = biases - lr * np.sum(deltas_scaled)
    return weights, biases


@pytest.fixture(scope="module")
def seed_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("s0_numpy")
    plain = subprocess.run([sys.executable, str(SCRIPT)], cwd=tmp, env=ENV, capture_output=True, text=True,
                           timeout=300)
    traced = subprocess.run([sys.executable, "-m", "tracer", "run", "--numpy-params", "weights,biases",
                             "--predictions", "outputs", "--loss", "loss", "--inputs", "x", "--targets", "targets",
                             "-o", str(tmp / "out"), str(SCRIPT)],
                            cwd=tmp, env=ENV, capture_output=True, text=True, timeout=600)
    return plain, traced, tmp / "out"


def test_seed_000_numpy_script_traced_unchanged(seed_run):
    plain, traced, out = seed_run
    assert plain.returncode == 0 == traced.returncode, traced.stderr
    assert traced.stdout == plain.stdout                      # the script's own output, untouched
    assert "numpy loop at line 68 training weights, biases - 100 steps recorded" in traced.stderr
    assert "steptrace check: OK - 100 steps" in traced.stderr
    assert "note:" not in traced.stderr                        # every name was given
    trace = Trace.load(out / "run_1")
    steps = trace.steps
    assert list(steps["step"]) == list(range(1, 101)) and list(steps["epoch"]) == list(range(1, 101))
    assert steps["loss"].iloc[0] == 2937.686334634683
    assert steps["loss"].iloc[-1] == 0.03627764373777711
    # bit-identical: the recorded parameters are the untraced loop's, and the script printed them
    w, b = untraced_s0()
    last = trace.params[trace.params.step == 100].set_index("param")
    assert last.loc["weights", "after"] == w[0, 0] and last.loc["biases", "after"] == b[0]
    assert plain.stdout.strip().endswith("[[13.09844702]] [1.73587336]")
    report = tracer.check(trace)
    assert report.verdict == "passed" and report.cannot_check == []
    assert (out / "run_1" / "csv" / "params.csv").is_file()
    # 100 steps x 1000 rows: too large for a default workbook; the command for it is printed
    assert not (out / "run_1" / "trace.xlsx").exists()
    assert f"write it with: steptrace export {out / 'run_1'} --xlsx {out / 'run_1' / 'trace.xlsx'}" in traced.stderr
    assert (out / "run_1" / "check.txt").read_text().startswith("steptrace check: OK")


# ------------------------------------------------------------------ in process
def run_in_process(tmp_path, source, params, **names):
    """Run ``source`` as a script with the NumPy loop session; returns (runs, namespace)."""
    script = tmp_path / "train.py"
    script.write_text(textwrap.dedent(source))
    site = find_loop(script.read_text(), str(script), params)
    runs = []
    auto = AutoTrace(frameworks=(), on_finish=runs.append, numpy=(site, NumpyOptions(params, **names)))
    auto.install()
    error = None
    try:
        namespace = runpy.run_path(str(script), run_name="__main__")
    except Exception as exc:
        error, namespace = exc, None
    finally:
        auto.uninstall(error)
    return runs, namespace, auto


MINIBATCH = """
import numpy as np

def predict(w, b, x):
    return x @ w + b

def train(x, y, epochs, lr=0.05):
    rng = np.random.default_rng(0)
    w, b = np.zeros((2, 1)), 0.0
    for epoch in range(epochs):
        order = rng.permutation(len(x))
        for start in range(0, len(x), 16):
            idx = order[start:start + 16]
            xb, yb = x[idx], y[idx]
            pred = predict(w, b, xb)
            err = pred - yb
            mse = np.mean(err ** 2)
            w = w - lr * 2 * xb.T @ err / len(xb)
            b = b - lr * 2 * np.mean(err)
    return w, b

x = np.random.default_rng(1).normal(size=(40, 2))
y = x @ np.array([[3.0], [-1.0]]) + 0.5
W, B = train(x, y, 3)
"""


def test_minibatch_loop_in_a_function_rows_found_by_content(tmp_path):
    runs, ns, _ = run_in_process(tmp_path, MINIBATCH, ["w", "b"], predictions="pred", loss="mse",
                                 model="predict")
    assert len(runs) == 1
    trace = runs[0].trace
    steps = trace.steps
    assert len(steps) == 9 and steps.groupby("epoch")["batch"].max().tolist() == [3, 3, 3]
    assert steps["batch_size"].tolist() == [16, 16, 8] * 3
    samples = trace.samples.merge(steps[["step", "epoch"]], on="step")
    for _, grp in samples.groupby("epoch"):
        assert sorted(grp["sample"]) == list(range(40))          # each epoch: a permutation of the rows
    report = tracer.check(trace)
    assert report.verdict == "passed", report.summary()
    assert "inputs: the variable 'x'" in " ".join(runs[0].notes)
    assert np.array_equal(trace.param_values("w", "after")[-1], ns["W"])      # bit-identical
    assert trace.param_values("b", "after")[-1] == ns["B"]


INLINE = MINIBATCH.replace("""            xb, yb = x[idx], y[idx]
            pred = predict(w, b, xb)
            err = pred - yb
            mse = np.mean(err ** 2)
            w = w - lr * 2 * xb.T @ err / len(xb)""", """            labels = (y[idx, 0] > 0).astype(int)     # another integer array of the batch's length
            pred = predict(w, b, x[idx])
            err = pred - y[idx]
            mse = np.mean(err ** 2)
            w = w - lr * 2 * x[idx].T @ err / len(idx)""")


def test_a_batch_cut_inline_is_found_by_its_index_array(tmp_path):
    """``predict(w, b, x[idx])``: no variable holds the batch's inputs, only ``idx`` - and
    ``labels``, another integer array of the batch's length. The index array is the one whose rows give the loop's predictions
    through the model; before, every step was "cannot check: model kind 'function'"."""
    source = INLINE
    assert "x[idx])" in source and "xb" not in source
    runs, ns, _ = run_in_process(tmp_path, source, ["w", "b"], predictions="pred", loss="mse", model="predict")
    trace = runs[0].trace
    assert trace.steps["batch_size"].tolist() == [16, 16, 8] * 3
    samples = trace.samples.merge(trace.steps[["step", "epoch"]], on="step")
    for _, grp in samples.groupby("epoch"):
        assert sorted(grp["sample"]) == list(range(40))
    report = tracer.check(trace)
    assert report.verdict == "passed" and not report.cannot_check, report.summary()
    assert any("index array 'idx'" in n for n in runs[0].notes), runs[0].notes
    assert np.array_equal(trace.param_values("w", "after")[-1], ns["W"])


def test_break_and_exception_keep_the_completed_steps(tmp_path):
    source = """
    import numpy as np
    x = np.arange(6.0).reshape(-1, 1); y = 2 * x
    w = np.zeros((1, 1))
    for i in range(50):
        out = x @ w
        loss = np.mean((out - y) ** 2)
        if i == 5:
            break
        w = w - 0.01 * 2 * x.T @ (out - y) / 6
    for j in range(10):
        out = x @ w
        loss = np.mean((out - y) ** 2)
        w = w - 0.01 * 2 * x.T @ (out - y) / 6
        if j == 3:
            raise ValueError("stop")
    """
    runs, _, _ = run_in_process(tmp_path, source, ["w"])
    assert [r.trace.n_steps for r in runs] == [5]              # the first loop assigns w too: it is the one
    assert tracer.check(runs[0].trace).verdict == "passed"


def test_an_exception_inside_the_loop_keeps_its_steps_and_reports_it(tmp_path):
    source = """
    import numpy as np
    x = np.arange(6.0).reshape(-1, 1); y = 2 * x
    w = np.zeros((1, 1))
    for j in range(10):
        out = x @ w
        loss = np.mean((out - y) ** 2)
        w = w - 0.01 * 2 * x.T @ (out - y) / 6
        if j == 3:
            raise ValueError("stop")
    """
    runs, ns, _ = run_in_process(tmp_path, source, ["w"])
    assert ns is None and len(runs) == 1
    assert runs[0].trace.n_steps == 3 and runs[0].error == "ValueError: stop"


def test_a_debuggers_trace_function_keeps_working_and_is_restored(tmp_path):
    seen = []

    def debugger(frame, event, arg):
        if frame.f_code.co_filename.endswith("train.py"):
            seen.append((event, frame.f_lineno))
            return debugger
        return None

    previous = sys.gettrace()
    sys.settrace(debugger)
    try:
        runs, ns, _ = run_in_process(tmp_path, MINIBATCH, ["w", "b"], predictions="pred", loss="mse")
        assert sys.gettrace() is debugger
    finally:
        sys.settrace(previous)
    assert runs[0].trace.n_steps == 9
    lines = {line for event, line in seen if event == "line"}
    assert {13, 15, 17, 18, 19, 24} <= lines                    # the loop's body and the lines after it


def test_nothing_is_left_traced_after_a_top_level_loop(tmp_path):
    source = """
    import sys
    import numpy as np
    x = np.ones((4, 1)); y = x
    w = np.zeros((1, 1))
    for i in range(3):
        out = x @ w
        w = w - 0.1 * x.T @ (out - y) / 4
    after_loop = sys.gettrace()
    """
    before = sys.gettrace()
    runs, ns, _ = run_in_process(tmp_path, source, ["w"])
    assert ns["after_loop"] is before and runs[0].trace.n_steps == 3


def test_missing_data_is_said_and_the_steps_are_kept(tmp_path):
    source = """
    import numpy as np
    data = np.ones((4, 1))
    w = np.zeros((1, 1))
    for i in range(3):
        w = w - 0.1 * (w - 1)
    """
    runs, _, _ = run_in_process(tmp_path, source, ["w"])
    assert runs[0].trace.n_steps == 3
    assert any("no training data" in n and "--inputs" in n for n in runs[0].notes)


@pytest.mark.parametrize("argv, message", [
    (["--loss", "loss", "S"], "--loss: names a variable of a NumPy loop; give --numpy-params too"),
    (["--numpy-params", "weights,,", "S"], "--numpy-params: expected comma-separated variable names"),
    (["--numpy-params", "weights,zz", "S"], "no for/while loop of the script assigns all of them "
                                            "(assigned inside loops: weights at line 89; zz in no loop)"),
])
def test_bad_numpy_options_exit_2_before_running(argv, message, tmp_path, capsys):
    argv = [str(SCRIPT) if a == "S" else a for a in argv]
    assert run.main(["-o", str(tmp_path / "out"), *argv]) == 2
    assert message in capsys.readouterr().err


LOGISTIC = """
import numpy as np

def sigmoid(z):
    return 1 / (1 + np.exp(-z))

def propagate(w, b, X):
    return sigmoid(np.dot(X, w) + b)

def cross_entropy(A, Y):
    return -np.mean(Y * np.log(A) + (1 - Y) * np.log(1 - A))

rng = np.random.default_rng(0)
X = rng.normal(size=(100, 2))
Y = (X[:, :1] - X[:, 1:] > 0).astype(float)
w = np.zeros((2, 1))
b = 0.0
m = X.shape[0]
for i in range(25):
    A = propagate(w, b, X)
    cost = cross_entropy(A, Y)
    dw = np.dot(X.T, A - Y) / m
    db = np.sum(A - Y) / m
    w = w - 0.5 * dw
    b = b - 0.5 * db
print(w.ravel(), b)
"""


def test_logistic_script_with_its_own_model_and_loss_functions(tmp_path, capsys):
    runs, ns, _ = run_in_process(tmp_path, LOGISTIC, ["w", "b"], model="propagate", loss_fn="cross_entropy")
    trace = runs[0].trace
    report = tracer.check(trace)
    assert report.verdict == "passed" and report.cannot_check == [], report.summary()
    assert trace.meta["program"]["outputs"]["loss"] == "cost"
    assert isinstance(ns["b"], float) and trace.param_values("b", "after")[-1] == ns["b"]
    notes = " ".join(runs[0].notes)
    for guess in ("inputs: the variable 'X'", "targets: the variable 'Y'", "predictions: the variable 'A'",
                  "loss: the variable 'cost'"):
        assert guess in notes


def test_a_loop_inside_a_generator_is_one_run_across_its_yields(tmp_path):
    source = """
    import numpy as np

    def training(x, y):
        w = np.zeros((1, 1))
        for i in range(4):
            out = x @ w
            loss = np.mean((out - y) ** 2)
            w = w - 0.01 * 2 * x.T @ (out - y) / len(x)
            yield loss

    x = np.arange(5.0).reshape(-1, 1); y = 3 * x
    losses = list(training(x, y))
    """
    runs, ns, _ = run_in_process(tmp_path, source, ["w"])
    assert len(runs) == 1 and runs[0].trace.n_steps == 4
    assert runs[0].trace.steps["loss"].tolist() == ns["losses"]


def test_a_loop_that_never_iterates_is_said_and_leaves_nothing(tmp_path, capsys):
    script = tmp_path / "never.py"
    script.write_text("import numpy as np\nw = np.zeros(1)\nfor i in range(0):\n    w = w - 1\nprint('done')\n")
    assert run.main(["--numpy-params", "w", str(script)]) == 0
    captured = capsys.readouterr()
    assert captured.out == "done\n"
    assert "never.py trained nothing steptrace can trace (the NumPy loop at line 3 completed no iteration)" \
        in captured.err
    assert not (tmp_path / "never.steptrace").exists()
