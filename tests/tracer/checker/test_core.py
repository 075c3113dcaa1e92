"""tracer.checker.core.check: the verdict, the check table and what a planted fault does to them.

Golden numbers are recomputed here independently (S0's first step by hand) and each
planted fault has a clean twin that must pass.
"""
from __future__ import annotations

import numpy as np
import pytest

import tracer
from tracer import Recorder
from _trace_factories import s0_data, s0_trace


def test_s0_first_step_values_match_a_hand_computation():
    x, y, w, b = s0_data()
    pred = x @ w + b
    loss = np.sum((pred - y) ** 2) / 2 / len(x)
    g_w = x.T @ ((pred - y) / len(x))
    report = tracer.check(s0_trace(iterations=3))
    t = report.table
    first = t[t["step"] == 1]
    assert first[first["quantity"] == "loss"]["expected"].item() == pytest.approx(loss, rel=1e-12)
    assert first[(first["quantity"] == "grad") & (first["param"] == "weights")]["expected"].item() == \
        pytest.approx(g_w.item(), rel=1e-12)
    assert report.verdict == "passed" and report.n_steps == 3
    assert set(t["quantity"]) >= {"loss", "prediction", "grad", "update"}
    assert t["passed"].all()


def _s0_with(after_edit=None, steps: int = 4):
    """S0 recorded by hand; ``after_edit(step, w_after)`` may plant a fault in what is recorded."""
    x, y, w, b = s0_data()
    n, lr = len(x), 0.02
    meta = {"framework": "numpy",
            "model": {"kind": "dense_stack", "layers": [{"type": "dense", "weight": "weights", "bias": "biases",
                                                         "transpose": False, "activation": "linear", "units": 1}]},
            "loss": {"name": "squared_error", "divide_by": [2, "n"]},
            "optimizer": {"name": "sgd", "convention": "plain", "lr": lr}}
    rec = Recorder(meta=meta)
    rec.set_data(x, y)
    for i in range(steps):
        pred = x @ w + b
        d = (pred - y) / n
        g_w, g_b = x.T @ d, d.sum(axis=0)
        new_w, new_b = w - lr * g_w, b - lr * g_b
        rec_w = after_edit(i + 1, new_w) if after_edit else new_w
        rec.record_step(epoch=1, batch=i + 1, params_before={"weights": w, "biases": b},
                        params_after={"weights": rec_w, "biases": new_b}, grads={"weights": g_w, "biases": g_b},
                        rows=np.arange(n), y_pred=pred, loss=np.sum((pred - y) ** 2) / 2 / n, batch_size=n)
        w, b = rec_w, new_b
    return rec.trace()


def test_planted_wrong_update_is_caught_at_its_step_and_parameter():
    report = tracer.check(_s0_with(lambda step, w: w * 1.01 if step == 3 else w))
    assert report.verdict == "failed"
    assert report.first_failing_step == 3
    bad = report.failures
    assert set(bad["param"].dropna()) == {"weights"} and set(bad["quantity"]) == {"update"}


def test_clean_twin_passes():
    report = tracer.check(_s0_with())
    assert report.verdict == "passed" and report.first_failing_step is None


def test_a_declared_loss_overrides_the_trace_and_a_wrong_one_fails():
    trace = s0_trace(iterations=2)
    assert tracer.check(trace, loss={"name": "squared_error", "divide_by": [2, "n"]}).verdict == "passed"
    wrong = tracer.check(trace, loss={"name": "squared_error", "divide_by": ["n"]})
    assert wrong.verdict == "failed"
    assert "loss" in set(wrong.failures["quantity"])


def test_nan_is_never_a_pass():
    report = tracer.check(_s0_with(lambda step, w: w * np.nan if step == 2 else w, steps=2))
    assert report.verdict != "passed"
    assert not report.table[(report.table["step"] == 2) & (report.table["quantity"] == "update")
                            & (report.table["param"] == "weights")]["passed"].any()
