"""S0: a hand-written NumPy gradient-descent loop, traced and checked by hand.

Golden numbers come from SCENARIOS.md; the untraced loop runs beside the traced one
to prove tracing changes nothing (bit-identical). Planted bugs must be caught at
step 1 with the parameter and the factor named.
"""
import numpy as np
import pytest

import tracer
from hooks.numpy import NumpyTracer
from tracer.app.examples import s0_data, s0_numpy


def untraced_s0(iterations=100, lr=0.02):
    x, targets, weights, biases = s0_data()
    for i in range(iterations):
        outputs = np.dot(x, weights) + biases
        deltas = outputs - targets
        loss = np.sum(deltas ** 2) / 2 / 1000
        deltas_scaled = deltas / 1000
        weights = weights - lr * np.dot(x.T, deltas_scaled)
        biases = biases - lr * np.sum(deltas_scaled)
    return weights, biases


@pytest.fixture(scope="module")
def s0():
    return s0_numpy()


def test_s0_golden_numbers_and_bit_identical(s0):
    trace, weights, biases = s0
    ref_w, ref_b = untraced_s0()
    assert np.array_equal(weights, ref_w) and np.array_equal(biases, ref_b)
    np.testing.assert_allclose(weights, [[13.09844702]], atol=5e-9)
    np.testing.assert_allclose(biases, [1.73587336], atol=5e-9)
    steps = trace.steps
    assert len(steps) == 100
    assert list(steps["step"]) == list(range(1, 101))
    assert list(steps["epoch"]) == list(range(1, 101)) and set(steps["batch"]) == {1}
    assert steps["loss"].iloc[0] == 2937.686334634683
    assert steps["loss"].iloc[-1] == 0.03627764373777711
    p = trace.params
    first = p[(p.step == 1)].set_index("param")
    assert first.loc["weights", "before"] == pytest.approx(-0.02509198, abs=5e-9)
    assert first.loc["biases", "before"] == pytest.approx(0.09014286128198325, abs=1e-15)
    last = p[(p.step == 100)].set_index("param")
    assert last.loc["weights", "after"] == ref_w[0, 0] and last.loc["biases", "after"] == ref_b[0]
    # predictions are made with the parameters before each step
    s1 = trace.samples[trace.samples.step == 1]
    x, targets, w0, b0 = s0_data()
    np.testing.assert_array_equal(s1["y_pred"].to_numpy(), (x @ w0 + b0).ravel())
    assert list(s1["sample"]) == list(range(1000))


def test_s0_check_passes_and_identifies(s0):
    trace, _, _ = s0
    report = tracer.check(trace)
    assert report.ok, report.summary()
    assert report.identified["loss"] == "sum of squares / 2 / n"
    assert "lr 0.02" in report.identified["optimizer"]
    assert report.first_failing_step is None
    counts = report.table.groupby("quantity").size().to_dict()
    assert counts == {"prediction": 100, "loss": 100, "update": 200}


def _buggy_s0(bug, lr=0.02):
    x, targets, weights, biases = s0_data()
    tr = NumpyTracer(params=["weights", "biases"], predictions="outputs", loss="loss",
                     inputs=x, targets=targets, lr=lr)
    for i in tr.range(5):
        outputs = np.dot(x, weights) + biases
        deltas = outputs - targets
        loss = np.sum(deltas ** 2) / 2 / 1000
        deltas_scaled = deltas / 1000
        if bug == "missing_1_over_n":
            weights = weights - lr * np.dot(x.T, deltas)
        elif bug == "sign":
            weights = weights + lr * np.dot(x.T, deltas_scaled)
        else:
            weights = weights - lr * np.dot(x.T, deltas_scaled)
        if bug != "never_updated":
            biases = biases - lr * np.sum(deltas_scaled)
    return tr.trace


@pytest.mark.parametrize("bug, param, factor, words", [
    ("missing_1_over_n", "weights", 1000.0, "missing the 1/n factor"),
    ("sign", "weights", -1.0, "sign error"),
    ("never_updated", "biases", 0.0, "never updated"),
])
def test_planted_bugs_are_caught_at_step_1(bug, param, factor, words):
    report = tracer.check(_buggy_s0(bug))
    assert not report.ok
    assert report.first_failing_step == 1
    first = report.first_failure()
    assert first["quantity"] == "update" and first["param"] == param
    assert first["factor"] == pytest.approx(factor, abs=1e-6)
    finding = [f for f in report.findings if f.param == param]
    assert finding and words in finding[0].message and finding[0].step == 1
    assert param in report.summary() and words in report.summary()
    # the correct parameter still passes
    other = report.table[(report.table.quantity == "update") & (report.table.param != param)]
    assert other["passed"].all()


def test_minibatch_rows_are_permutations_and_check_passes():
    x, targets, weights, biases = s0_data()
    state = np.random.get_state()
    tr = NumpyTracer(params=["weights", "biases"], predictions="outputs", loss="loss",
                     inputs=x, targets=targets)
    lr = 0.02
    for epoch in range(3):
        for rows in tr.batches(batch_size=64, shuffle=True, seed=7):
            xb, yb = x[rows], targets[rows]
            outputs = xb @ weights + biases
            deltas = outputs - yb
            loss = np.mean(deltas ** 2)
            weights = weights - lr * 2 * xb.T @ deltas / len(rows)
            biases = biases - lr * 2 * deltas.sum(axis=0) / len(rows)
    # the user's global random stream is untouched
    assert all(np.array_equal(a, b) for a, b in zip(state[1:2], np.random.get_state()[1:2]))
    trace = tr.trace
    steps = trace.steps
    assert len(steps) == 3 * 16
    assert steps.groupby("epoch")["batch"].max().tolist() == [16, 16, 16]
    samples = trace.samples.merge(steps[["step", "epoch"]], on="step")
    orders = []
    for epoch, grp in samples.groupby("epoch"):
        assert sorted(grp["sample"]) == list(range(1000))
        orders.append(grp["sample"].tolist())
    assert orders[0] != orders[1]
    report = tracer.check(trace)
    assert report.ok, report.summary()
    assert report.identified["loss"] == "sum of squares / n"  # = the mean, with one output
    assert "lr 0.02" in report.identified["optimizer"]


def test_crash_keeps_every_completed_step():
    x, targets, weights, biases = s0_data()
    tr = NumpyTracer(params=["weights", "biases"], predictions="outputs", loss="loss",
                     inputs=x, targets=targets)
    with pytest.raises(ZeroDivisionError):
        for i in tr.range(10):
            outputs = x @ weights + biases
            loss = float(np.mean((outputs - targets) ** 2))
            if i == 6:
                1 / 0
            weights = weights - 0.01 * 2 * x.T @ (outputs - targets) / 1000
            biases = biases - 0.01 * 2 * np.sum(outputs - targets) / 1000
    trace = tr.trace
    assert list(trace.steps["step"]) == [1, 2, 3, 4, 5, 6]
    assert tracer.check(trace).ok


def test_explicit_record_step():
    x, targets, w, b = s0_data()
    tr = NumpyTracer(params=["w", "b"], inputs=x, targets=targets, lr=0.02)
    for _ in range(3):
        out = x @ w + b
        g_w = x.T @ (out - targets) / 1000
        g_b = np.sum(out - targets, axis=0) / 1000
        new_w, new_b = w - 0.02 * g_w, b - 0.02 * g_b
        tr.record_step(params_before={"w": w, "b": b}, params_after={"w": new_w, "b": new_b},
                       grads={"w": g_w, "b": g_b}, rows=np.arange(1000), y_pred=out,
                       loss=np.sum((out - targets) ** 2) / 2 / 1000)
        w, b = new_w, new_b
    report = tracer.check(tr.trace)
    assert report.ok, report.summary()
    assert set(report.table.quantity) == {"prediction", "loss", "grad", "update"}


def test_explain_shows_numbers(s0):
    trace, _, _ = s0
    text = tracer.explain(trace, step=1)
    assert "sum of squares / 2 / n" in text
    assert "L = loss = 2937.686   recorded 2937.686" in text        # 7 significant digits for reading
    assert "weights: -0.02509198 ->" in text
    assert "p \u2190 p \u2212 lr\u00b7g" in text and "p \u2190 (-0.025092) \u2212 0.02\u00b7(-447.739)" in text
    assert "all 4 checks of this step passed" in text
