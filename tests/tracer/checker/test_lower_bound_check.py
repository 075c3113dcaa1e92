"""The checker's lower bound of the magnitudes settles rows without changing a verdict.

A float32 MLP wide enough that its first layer's products are cut by the bound
(tracer/checker/tolerance.py) is recorded from real torch steps. Planted on the most
deeply cancelled element of a first-layer gradient (``|value|`` far below its magnitude
``M``): an error 1.5 times the tolerance ``FACTOR * eps * M`` must fail, on that step and
element; one 0.5 times it must pass (the bound alone cannot settle that row, the exact
magnitudes do); the clean twin passes, its first-layer gradient rows settled by the bound.
"""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import tracer  # noqa: E402
from tracer.checker.feed import leaves, positions, step_groups  # noqa: E402
from tracer.checker.resolve import resolve_program  # noqa: E402
from tracer.checker.tolerance import EPS, FACTOR  # noqa: E402
from tracer.program import Evaluation  # noqa: E402

from tests._torch_mlp import exact_requests, sgd_mlp_trace  # noqa: E402



def _trace(steps=6, batch=32, k=64, hidden=128, lr=0.01):
    return sgd_mlp_trace(steps, batch, k, hidden, lr, seed=3, y_scale=8)


def _cancelled_element(trace, step_pos):
    """``(flat index, exact magnitude)`` of the first-layer gradient element of the step at
    ``step_pos`` whose value is smallest against its magnitude (computed as the checker does)."""
    arrays = trace.arrays()
    program = resolve_program(trace).program
    group = step_groups(arrays)[0]
    ev = Evaluation(program, leaves(program, arrays, group, np.float32), np.float32)
    assert ev.lower_saves()                                 # the bound is in play here
    g = ev.gradients()["0.weight"].reshape(len(group.steps), -1)[step_pos].astype(np.float64)
    m = ev.gradient_magnitudes()["0.weight"].reshape(len(group.steps), -1)[step_pos].astype(np.float64)
    i = int(np.argmin(np.where(m > 0, np.abs(g) / m, np.inf)))
    assert abs(g[i]) < 1e-3 * m[i]                          # deeply cancelled
    return i, m[i], positions(group.param_pos)


@pytest.fixture(scope="module")
def clean():
    return _trace()


def _planted(size):
    trace = _trace()
    i, m, _ = _cancelled_element(trace, 2)
    grad = trace.arrays().params["0.weight"].grad
    grad[2, i] += np.float32(size * FACTOR * EPS["float32"] * m)
    return trace, i


def _exact_rows(monkeypatch):
    return exact_requests(monkeypatch, "grad")


def test_the_clean_twin_passes_its_gradient_rows_settled_by_the_bound(clean, monkeypatch):
    asked = _exact_rows(monkeypatch)
    report = tracer.check(clean)
    assert report.verdict == "passed", report.summary()
    assert not [a for a in asked if a[0] == "0.weight"]


def test_an_error_just_above_the_tolerance_on_a_cancelled_element_fails(clean):
    trace, i = _planted(1.5)
    report = tracer.check(trace)
    assert report.verdict == "failed"
    fails = report.failures
    assert fails[["step", "quantity", "param", "index"]].values.tolist() == [[3, "grad", "0.weight", i]]
    assert 1.4 < fails["rel_err"].iloc[0] / (FACTOR * EPS["float32"]) < 1.6     # measured against M


def test_an_error_just_below_the_tolerance_passes_by_the_exact_magnitudes(monkeypatch):
    trace, i = _planted(0.5)
    asked = _exact_rows(monkeypatch)
    report = tracer.check(trace)
    assert [a for a in asked if a[0] == "0.weight"] == [("0.weight", 1)]    # that row only
    assert report.verdict == "passed", report.summary()
    row = report.table.query("step == 3 and quantity == 'grad' and param == '0.weight'").iloc[0]
    assert int(row["index"]) == i                           # the planted element is the row's worst
