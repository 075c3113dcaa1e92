"""``steptrace run`` on the scenario scripts, pasted as a learner would paste them.

Each script under tests/scripts/ runs unedited through ``python -m tracer run`` in a
subprocess (its own working directory, a temporary one). What is asserted:

- the script's stdout is the script's own: identical to a plain ``python script.py``
  where the script is deterministic (S0 PyTorch is seeded), and otherwise every value
  it prints agrees with the recorded trace (final weights, per-epoch losses);
- every training run became a saved trace whose check passed;
- golden numbers from SCENARIOS.md / FRAMEWORK-FACTS.md where the scenario has them.

The scenario subprocesses are started together by a module-scoped fixture, so the
TensorFlow/PyTorch start-up costs overlap.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tracer import Trace

pytestmark = [pytest.mark.slow]

TESTS = Path(__file__).resolve().parents[1]
ROOT = TESTS.parent
SCRIPTS = TESTS / "scripts"
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "MPLBACKEND": "Agg",
       "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
ENV.pop("STEPTRACE_PROGRESS_INTERVAL", None)

# scenario -> extra steptrace options (Excel only where it is small: it is slow to write)
SCENARIOS = {
    "s0_keras": ["--no-excel"],
    "s0_torch": ["--no-excel"],
    "s1_torch": ["--no-excel"],
    "s2_keras": [],
    "s3_torch": ["--no-excel"],
    "two_fits": ["--no-excel", "--no-csv"],
    "keras_raise": ["--no-excel", "--no-csv"],
}
PLAIN = ["s0_torch"]          # deterministic scripts also run without steptrace, to compare stdout


class Result:
    """A finished ``steptrace run``: exit code, stdout, stderr, output dir, index."""

    def __init__(self, proc, out: Path, cwd: Path, seconds: float):
        self.code = proc.returncode
        self.stdout = proc.stdout
        self.stderr = proc.stderr
        self.out = out
        self.cwd = cwd
        self.seconds = seconds
        index = out / "index.json"
        self.index = json.loads(index.read_text()) if index.is_file() else None

    def run(self, n: int) -> dict:
        return next(r for r in self.index["runs"] if r["run"] == n)

    def trace(self, n: int = 1) -> Trace:
        return Trace.load(self.out / f"run_{n}")

    def explain(self) -> str:
        return f"exit {self.code}\n--- stdout\n{self.stdout[-3000:]}\n--- stderr\n{self.stderr[-5000:]}"


def _start(name: str, tmp: Path, traced: bool):
    cwd = tmp / (name + ("" if traced else "_plain"))
    cwd.mkdir()
    out = cwd / "out"
    script = str(SCRIPTS / f"{name}.py")
    if traced:
        cmd = [sys.executable, "-m", "tracer", "run", "-o", str(out), *SCENARIOS[name], script]
    else:
        cmd = [sys.executable, script]
    proc = subprocess.Popen(cmd, cwd=cwd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    return proc, out, cwd, time.monotonic()


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    """Run every scenario (two at a time: CI has 2 cores) and collect the results."""
    tmp = tmp_path_factory.mktemp("run_scenarios")
    jobs = [(name, True) for name in SCENARIOS] + [(name, False) for name in PLAIN]
    # longest first, so the pairs finish together
    jobs.sort(key=lambda j: 0 if j[0] in ("s0_keras", "s0_torch") else 1)
    done, running = {}, []
    while jobs or running:
        while jobs and len(running) < 2:
            name, traced = jobs.pop(0)
            running.append((name, traced, *_start(name, tmp, traced)))
        name, traced, proc, out, cwd, t0 = running.pop(0)
        stdout, stderr = proc.communicate(timeout=600)
        proc.stdout, proc.stderr = stdout, stderr
        done[name if traced else name + ":plain"] = Result(proc, out, cwd, time.monotonic() - t0)
    return done


def _ok(res: Result, n_runs: int = 1):
    assert res.code == 0, res.explain()
    assert res.index is not None, res.explain()
    assert len(res.index["runs"]) == n_runs, res.explain()
    for run in res.index["runs"]:
        assert run["saved"], res.explain()
        assert run["verdict"] == "passed", f"run {run['run']} check: {run['verdict']}\n" + res.explain()
        assert (res.out / run["dir"] / "check.txt").read_text().startswith("steptrace check: OK")


def _floats(text: str) -> list[float]:
    return [float(t) for t in re.findall(r"-?\d+\.?\d*(?:e[-+]?\d+)?", text)]


def _only_line(stdout: str, prefix: str) -> str:
    lines = [line for line in stdout.splitlines() if line.startswith(prefix)]
    assert len(lines) == 1, (prefix, stdout[-2000:])
    return lines[0]


# ------------------------------------------------------------------------- S0 Keras
@pytest.mark.keras
def test_s0_keras_pasted_script_traced(results):
    res = results["s0_keras"]
    _ok(res)
    assert (res.cwd / "TF_intro.npz").is_file()          # the script's own file, in its own cwd
    out = res.stdout
    assert out.startswith("(1000, 1)\n(1000, 1)\n")
    assert out.count("Epoch ") == 100 and "Epoch 100/100" in out
    assert "steptrace" not in out                      # steptrace writes only to stderr
    trace = res.trace()
    steps = trace.steps
    assert len(steps) == 3200 and steps["epoch"].max() == 100 and steps["batch"].max() == 32
    assert steps.groupby("epoch")["batch_size"].sum().eq(1000).all()
    # the data table is the script's data: regenerate it the way the page does
    np.random.seed(42)
    x = np.random.uniform(low=-10, high=10, size=(1000, 1))
    np.testing.assert_array_equal(trace.data["x"].to_numpy(), x[:, 0])
    np.testing.assert_allclose(trace.data["y"].to_numpy(), 13.1 * x[:, 0] + 2, atol=1e-9)
    # each epoch feeds every row exactly once (the rows of shuffled batches were found)
    samples = trace.samples.merge(steps[["step", "epoch"]], on="step")
    per_epoch = samples.groupby("epoch")["sample"].agg(lambda s: sorted(s) == list(range(1000)))
    assert per_epoch.all()
    # the printed final (bias, weights) are the trace's last values, to the last bit
    kernel = next(n for n in trace.param_names if n.endswith("kernel"))
    bias = next(n for n in trace.param_names if n.endswith("bias"))
    printed = _floats(out.splitlines()[-1].replace("float32", ""))
    assert np.float32(printed[0]) == trace.param_values(bias, "after")[-1].ravel()[0]
    assert np.float32(printed[1]) == trace.param_values(kernel, "after")[-1].ravel()[0]
    assert printed[0] == pytest.approx(2.0, abs=1e-3) and printed[1] == pytest.approx(13.1, abs=1e-3)


# ----------------------------------------------------------------------- S0 PyTorch
@pytest.mark.torch
def test_s0_torch_output_unchanged_and_traced(results):
    res, plain = results["s0_torch"], results["s0_torch:plain"]
    assert plain.code == 0, plain.explain()
    _ok(res)
    assert res.stdout == plain.stdout                   # seeded script: byte-identical output
    lines = res.stdout.splitlines()
    assert lines[-1] == "OrderedDict([('0.weight', tensor([[13.1000]])), ('0.bias', tensor([2.0000]))])"
    trace = res.trace()
    steps = trace.steps
    assert len(steps) == 100 * 63 and steps["epoch"].max() == 100 and steps["batch"].max() == 63
    assert steps.groupby("epoch")["batch_size"].sum().eq(1000).all()
    w, b = trace.param_values("0.weight", "before"), trace.param_values("0.bias", "before")
    init = [float(v) for v in re.findall(r"tensor\(\[+([-\d.]+)", lines[2])]   # printed initial state_dict
    assert len(init) == 2
    assert round(float(w[0].ravel()[0]), 4) == init[0] and round(float(b[0].ravel()[0]), 4) == init[1]
    assert float(trace.param_values("0.weight", "after")[-1].ravel()[0]) == pytest.approx(13.1, abs=5e-5)
    assert float(trace.param_values("0.bias", "after")[-1].ravel()[0]) == pytest.approx(2.0, abs=5e-5)
    assert steps["lr"].eq(0.02).all()


# ------------------------------------------------------------------------------ S1
@pytest.mark.torch
def test_s1_raw_tensor_script_traced(results):
    res = results["s1_torch"]
    _ok(res)
    trace = res.trace()
    steps = trace.steps
    assert len(steps) == 50 * 5 and steps["epoch"].max() == 50
    assert sorted(trace.param_names) == ["b", "w"]
    # the printed w before training is the trace's first "before"
    text = res.stdout
    # (the first printed 2x3 requires_grad tensor is w)
    m = re.search(r"tensor\((\[\[[^\]]*\],\s*\[[^\]]*\]\]), requires_grad=True\)", text)
    assert m, text[:2000]
    w0 = np.array(_floats(m.group(1))).reshape(2, 3)
    np.testing.assert_allclose(trace.param_values("w", "before")[0], w0, atol=6e-5)
    # "Epoch i/50: Loss: ..." prints the last batch's loss of each epoch: the trace agrees
    printed = [float(line.split("Loss:")[1]) for line in text.splitlines() if line.startswith("Epoch ")]
    assert len(printed) == 50
    last = steps.groupby("epoch")["loss"].last().to_numpy()
    np.testing.assert_allclose(last, printed, rtol=1e-4, atol=1e-4)
    # the update is the page's w -= w.grad * 1e-6 (up to float32 rounding of w itself)
    w = trace.param_values("w", "before")
    upd = trace.param_values("w", "update")
    grad = trace.param_values("w", "grad")
    ulp = np.spacing(np.abs(w).astype(np.float32)).astype(np.float64)
    assert np.all(np.abs(upd - (-1e-6 * grad)) <= ulp + 1e-6 * np.abs(1e-6 * grad))


# ------------------------------------------------------------------------------ S2
@pytest.mark.keras
def test_s2_learner_script_golden_numbers(results):
    res = results["s2_keras"]
    _ok(res)
    out = res.stdout
    assert "init slope is 0.5\ninit bias is 0.0\n" in out
    assert "loss: 402.9850 - root_mean_squared_error: 20.0745" in out
    assert "val_loss: 352.3350 - val_root_mean_squared_error: 18.7706" in out
    loss_after = float(_only_line(out, "manually computed loss after slope").split()[-1])
    assert loss_after == pytest.approx(352.3350379264957, rel=1e-6)
    trace = res.trace()
    steps = trace.steps
    assert len(steps) == 1
    assert steps["loss"].iloc[0] == pytest.approx(402.9850158691406, rel=1e-6)
    assert steps["logged_root_mean_squared_error"].iloc[0] == pytest.approx(20.074485778808594, rel=1e-6)
    kernel = next(n for n in trace.param_names if n.endswith("kernel"))
    bias = next(n for n in trace.param_names if n.endswith("bias"))
    assert float(trace.param_values(kernel, "before").ravel()[0]) == 0.5
    assert float(trace.param_values(kernel, "after").ravel()[0]) == pytest.approx(0.65811384, abs=1e-7)
    assert float(trace.param_values(bias, "after").ravel()[0]) == pytest.approx(0.15811387, abs=1e-7)
    # the printed slope is the trace's updated kernel
    slope = _floats(out[out.index("Slope"):out.index("Intercept")])[0]
    assert np.float32(slope) == trace.param_values(kernel, "after").ravel()[0]
    # the spreadsheet files were written beside the trace
    run = res.out / "run_1"
    assert {p.name for p in (run / "csv").glob("*.csv")} >= {"steps.csv", "params.csv", "samples.csv"}
    assert (run / "trace.xlsx").stat().st_size > 0
    assert res.run(1)["files"] == ["csv/", "trace.xlsx"]


# ------------------------------------------------------------------------------ S3
@pytest.mark.torch
def test_s3_d2l_generator_script_traced(results):
    res = results["s3_torch"]
    _ok(res)
    trace = res.trace()
    steps = trace.steps
    assert len(steps) == 5 * 100 and steps["epoch"].max() == 5
    assert set(trace.param_names) == {"w", "b"}
    # rows were recovered from the user's generator: every epoch covers all 1000 rows once
    samples = trace.samples.merge(steps[["step", "epoch"]], on="step")
    assert samples.groupby("epoch")["sample"].agg(lambda s: sorted(s) == list(range(1000))).all()
    data = trace.data
    X = data[["x0", "x1"]].to_numpy(np.float64)
    y = data["y"].to_numpy(np.float64)
    w_after = trace.param_values("w", "after").astype(np.float64)
    b_after = trace.param_values("b", "after").astype(np.float64)
    last_of_epoch = steps.groupby("epoch")["step"].max().to_numpy() - 1
    printed = [float(line.split("loss")[1]) for line in res.stdout.splitlines() if line.startswith("epoch ")]
    assert len(printed) == 5
    for k, i in enumerate(last_of_epoch):     # "epoch k, loss ..." = mean squared_loss after epoch k
        full = X @ w_after[i] + b_after[i] - y[:, None]
        assert float(np.mean(full ** 2 / 2)) == pytest.approx(printed[k], abs=2e-6)
    err_w = _floats(_only_line(res.stdout, "error in estimating w").split("tensor")[1])[:2]
    true_w = np.array([2, -3.4], dtype=np.float32)
    # torch prints 4 decimals (fixed or scientific): agree to that precision
    np.testing.assert_allclose(true_w - trace.param_values("w", "after")[-1].ravel(), err_w,
                               rtol=5e-4, atol=5e-5)
    # the page's sgd: param -= lr * grad / batch_size with lr 0.03, batch 10
    w = trace.param_values("w", "before")
    expected = -0.003 * trace.param_values("w", "grad").astype(np.float64)
    ulp = np.spacing(np.abs(w).astype(np.float32)).astype(np.float64)
    assert np.all(np.abs(trace.param_values("w", "update") - expected) <= ulp + 1e-6 * np.abs(expected))


# ------------------------------------------------------------- two runs, a raise
@pytest.mark.keras
def test_two_fit_calls_give_two_traces(results):
    res = results["two_fits"]
    _ok(res, n_runs=2)
    assert [r["steps"] for r in res.index["runs"]] == [1, 12]
    first, second = res.trace(1), res.trace(2)
    k1 = next(n for n in first.param_names if n.endswith("kernel"))
    k2 = next(n for n in second.param_names if n.endswith("kernel"))
    assert float(first.param_values(k1, "after").ravel()[0]) == pytest.approx(0.6581139, abs=1e-7)
    # FRAMEWORK-FACTS: S2 with epochs=4, batch_size=4, shuffle=False
    golden_kernel = [0.6581139, 0.8133439, 0.95879096, 0.9698953, 1.0271562, 1.1329172,
                     1.1410482, 1.1846774, 1.274396, 1.281273, 1.3188599, 1.3996835]
    golden_logged = [73.885, 187.73184, 325.36114, 48.24874, 136.83186, 252.76921,
                     39.48581, 113.57014, 211.38586, 33.02761, 96.15235, 179.49981]
    np.testing.assert_allclose(second.param_values(k2, "after").ravel(), golden_kernel, rtol=1e-6)
    np.testing.assert_allclose(second.steps["logged_loss"], golden_logged, rtol=1e-6)
    assert second.steps[["epoch", "batch"]].values.tolist() == [[e, b] for e in range(1, 5) for b in range(1, 4)]
    # the script printed what it would print anyway
    assert float(_only_line(res.stdout, "run 2 slope").split()[3]) == pytest.approx(1.3996835, abs=1e-7)


@pytest.mark.keras
def test_keras_script_raising_mid_fit_keeps_steps_and_exit_code(results):
    res = results["keras_raise"]
    assert res.code == 1, res.explain()
    # Python's own traceback, from the script's frames, without steptrace's
    tb = res.stderr[res.stderr.index("Traceback (most recent call last):"):]
    assert 'keras_raise.py", line' in tb.splitlines()[1]
    assert "tracer/app/" not in tb and "hooks/autotrace/" not in tb and "runpy" not in tb
    assert "ValueError: loss is still too high, giving up" in tb
    assert "never printed" not in res.stdout
    printed = float(_only_line(res.stdout, "slope after epoch 2:").split()[-1])
    run = res.run(1)
    assert run["steps"] == 6 and run["error"].startswith("ValueError") and run["verdict"] == "passed"
    trace = res.trace(1)
    kernel = next(n for n in trace.param_names if n.endswith("kernel"))
    after = trace.param_values(kernel, "after").ravel()
    np.testing.assert_allclose(after, [0.6581139, 0.8133439, 0.95879096, 0.9698953, 1.0271562, 1.1329172],
                               rtol=1e-6)
    assert np.float32(printed) == after[-1]
    assert res.index["exit_code"] == 1


def test_scenario_timings_are_reasonable(results):
    """All of the above, two at a time, well inside the suite's budget (CI: 2 cores)."""
    total = sum(r.seconds for r in results.values())
    assert total < 400, {k: round(r.seconds, 1) for k, r in results.items()}
