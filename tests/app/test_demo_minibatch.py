"""``steptrace demo --minibatch``: epoch vs batch vs iteration on S2's data, no TensorFlow.

The printed table is recomputed here with plain NumPy from the rows the trace says
each iteration used: the batch losses, Keras's running average within each epoch
(reset at each epoch), and the parameters, bit-identical to an untraced loop drawing
the same batches. A running average logged the wrong way (the batch's own loss) is
caught by the checker, beside the demo's correct one that passes.
"""
import numpy as np
import pytest

import tracer
from hooks.numpy import NumpyTracer
from tracer.app.cli import EXIT_OK, main
from tracer.app.examples import S2_X, S2_Y, s2_minibatch_numpy


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("minibatch")
    return out, s2_minibatch_numpy()


def test_demo_prints_epochs_batches_iterations_and_the_running_loss(tmp_path, capsys):
    assert main(["demo", "--minibatch", "--out", str(tmp_path)]) == EXIT_OK
    text = capsys.readouterr().out
    assert "iteration: one update of w and b, from one batch: 3 per epoch, 12 in all" in text
    assert "not Keras's RMSprop" in text
    table = [line.split() for line in text.splitlines() if line.strip()[:2].strip().isdigit()
             and len(line.split()) > 8]
    assert [int(r[0]) for r in table] == list(range(1, 13))
    assert [(int(r[1]), int(r[2])) for r in table] == [(e, b) for e in (1, 2, 3, 4) for b in (1, 2, 3)]
    assert "epoch 1: 168.824" in text
    assert "steptrace check: OK - 12 steps" in text and "logged_loss                  12/12 passed" in text
    for name in ("minibatch.trace/meta.json", "minibatch.xlsx", "csv/steps.csv"):
        assert (tmp_path / name).exists()


def test_running_average_and_parameters_recomputed_by_hand(demo):
    _, (trace, w, b) = demo
    steps = trace.steps
    rows = trace.samples.groupby("step")["sample"].apply(list)
    w0, b0 = np.array([[0.5]]), np.zeros(1)
    for epoch in range(1, 5):                      # an untraced loop over the same batches
        order = np.random.default_rng([0, epoch]).permutation(12)
        assert sorted(order) == list(range(12))
        seen = total = 0.0
        for k, start in enumerate(range(0, 12, 4), start=1):
            r = order[start:start + 4]
            step = (epoch - 1) * 3 + k
            assert rows[step] == list(r)
            xb, yb = S2_X[r], S2_Y[r]
            pred = xb @ w0 + b0
            loss = np.mean((pred - yb) ** 2)
            seen, total = seen + 4, total + loss * 4
            row = steps[steps.step == step].iloc[0]
            assert (row.epoch, row.batch, row.loss) == (epoch, k, loss)
            assert row.logged_loss == total / seen
            grad = 2 * (pred - yb) / 4
            w0, b0 = w0 - 0.005 * xb.T @ grad, b0 - 0.005 * np.sum(grad, axis=0)
    assert np.array_equal(w, w0) and np.array_equal(b, b0)
    assert steps.loss.iloc[0] == pytest.approx(409.4425, abs=1e-9)
    assert steps.logged_loss.iloc[2] == pytest.approx(168.82363666, rel=1e-9)


def test_a_running_average_logged_wrong_is_caught():
    x, y = S2_X, S2_Y
    w, b = np.array([[0.5]]), np.zeros(1)
    tr = NumpyTracer(params=["w", "b"], predictions="p", loss="loss", inputs=x, targets=y, lr=0.005,
                     logs={"loss": "shown"})
    for epoch in range(2):
        for rows in tr.batches(batch_size=4, seed=0):
            p = x[rows] @ w + b
            loss = np.mean((p - y[rows]) ** 2)
            shown = loss                           # the batch's own loss, not the epoch's running mean
            g = 2 * (p - y[rows]) / 4
            w, b = w - 0.005 * x[rows].T @ g, b - 0.005 * np.sum(g, axis=0)
    report = tracer.check(tr.trace)
    assert report.verdict == "failed"
    bad = report.failures
    assert set(bad.quantity) == {"logged_loss"} and bad.step.tolist() == [2, 3, 5, 6]
