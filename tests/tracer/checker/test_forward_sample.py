"""The forward lower bound of a wide first layer is twice its value, and stays a bound.

A float32 MLP whose first layer contracts 256 inputs (a product the bound cuts, stride 16
of :data:`tracer.program.matmul.LOWER_STRIDE`) is recorded from real torch steps. A
product of two leaves is bounded by ``2 |x @ W|``, the value the evaluation computed,
and ``|x @ W| <= |x| @ |W|``, so ``L <= M`` element by element (checked here against the
exact walk); the clean twin's prediction rows are settled by the bound (no exact
magnitude asked for); an error of 1.5 times ``FACTOR * eps * M`` planted on the
prediction whose value is smallest against ``M`` fails on that step, one of 0.5 times it
passes (decided by the exact magnitudes).
"""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import tracer  # noqa: E402
from tracer.checker.feed import leaves, step_groups  # noqa: E402
from tracer.checker.resolve import resolve_program  # noqa: E402
from tracer.checker.tolerance import EPS, FACTOR  # noqa: E402
from tracer.program import Evaluation  # noqa: E402
from tracer.program.matmul import LOWER_STRIDE  # noqa: E402
from tracer.program.registry import get_op  # noqa: E402

from tests._torch_mlp import exact_requests, sgd_mlp_trace  # noqa: E402

STEPS, BATCH, K, HIDDEN = 4, 32, 256, 64


def _trace(lr=0.01):
    return sgd_mlp_trace(STEPS, BATCH, K, HIDDEN, lr, seed=5, y_scale=16)


def _evaluation(trace):
    arrays = trace.arrays()
    program = resolve_program(trace).program
    group = step_groups(arrays)[0]
    return Evaluation(program, leaves(program, arrays, group, np.float32), np.float32)


@pytest.fixture(scope="module")
def clean():
    return _trace()


def test_the_wide_first_layer_is_bounded_by_twice_its_value_and_stays_below_m(clean):
    ev = _evaluation(clean)
    first = next(n for n in ev._nodes if n.op == "matmul")          # x @ W of the first layer
    xs = [ev._arg(a) for a in first.args][:2]
    assert get_op("matmul").strides(xs)[0] == LOWER_STRIDE["forward"] == 16     # a cut product
    low, exact = ev.magnitudes(lower=True), ev.magnitudes()
    xw = np.asarray(ev.values[first.name], np.float64)
    assert np.array_equal(np.asarray(low[first.name], np.float64), 2 * np.abs(xw))   # exactly (times 2 is exact)
    for name in ("z1", "h", "z2"):
        lo, m = np.asarray(low[name], np.float64), np.asarray(exact[name], np.float64)
        assert np.all(lo / 2 <= m), name                     # LOWER_FACTOR 0.5: float32 rounding
        assert np.all(lo > 0) if name != "h" else np.any(lo > 0)
    m = np.asarray(exact[first.name], np.float64)
    assert np.all(2 * np.abs(xw) <= m * (1 + 1e-6)) and np.median(2 * np.abs(xw) / m) > 0.01


def _exact_prediction_rows(monkeypatch):
    return exact_requests(monkeypatch, "value")


def test_the_clean_twin_settles_its_prediction_rows_by_the_bound(clean, monkeypatch):
    asked = _exact_prediction_rows(monkeypatch)
    report = tracer.check(clean)
    assert report.verdict == "passed", report.summary()
    assert report.table.query("quantity == 'prediction'").shape[0] == STEPS
    assert not [a for a in asked if a[0] == "z2"]


def _planted(size):
    trace = _trace()
    ev = _evaluation(trace)
    v = np.asarray(ev.values["z2"], np.float64).reshape(STEPS, -1)[2]
    m = np.asarray(ev.magnitudes()["z2"], np.float64).reshape(STEPS, -1)[2]
    j = int(np.argmin(np.abs(v) / m))
    trace.arrays().sample_pred.reshape(STEPS * BATCH, -1)[2 * BATCH + j, 0] += np.float32(
        size * FACTOR * EPS["float32"] * max(m[j], abs(v[j])))
    return trace


def test_an_error_above_the_tolerance_on_a_prediction_fails():
    report = tracer.check(_planted(1.5))
    assert report.verdict == "failed"
    assert report.failures[["step", "quantity"]].values.tolist() == [[3, "prediction"]]


def test_an_error_below_the_tolerance_on_a_prediction_passes():
    report = tracer.check(_planted(0.5))
    assert report.verdict == "passed", report.summary()
