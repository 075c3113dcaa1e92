"""A NumPy loop whose tracing breaks on purpose goes on bit-identically (issue 11 item 1).

Each case is a loop that steptrace cannot follow past some step (a parameter that
changes shape, one replaced by something that is not an array, one deleted, a loss that
is a string). Run with ``NumpyTracer`` and without, it must print and compute the same
numbers; tracing stops with one RuntimeWarning naming the cause, and the trace keeps the
steps recorded before it (with a note).
"""
from __future__ import annotations

import warnings

import numpy as np
import pytest

from hooks.numpy import NumpyTracer


def _data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 2))
    return x, x @ np.array([[2.0], [-3.4]]) + 4.2


def grows(i, w, b):
    """The weight gains a row at step 6 (a model that changes mid-run)."""
    return (np.vstack([w, [[0.0]]]), b) if i == 5 else (w, b)


def becomes_text(i, w, b):
    """The bias is replaced by a string at step 4."""
    return (w, "gone") if i == 3 else (w, b)


def becomes_list(i, w, b):
    """The weight turns into a nested list of objects at step 3."""
    return ([[object()], [object()]], b) if i == 2 else (w, b)


CASES = [grows, becomes_text, becomes_list]


def _loop(case, traced: bool):
    """The user's loop: SGD on a linear model, breaking as ``case`` says; returns what it printed."""
    x, y = _data()
    w, b = np.zeros((2, 1)), np.zeros(1)
    printed = []
    tracer = NumpyTracer(params=["w", "b"], predictions="out", loss="loss", inputs=x, targets=y) if traced else None
    steps = tracer.range(10) if traced else range(10)
    for i in steps:
        if isinstance(w, np.ndarray) and w.shape == (2, 1) and isinstance(b, np.ndarray):
            out = x @ w + b
            loss = float(np.mean((out - y) ** 2))
            g = 2 * (out - y) / len(x)
            w, b = w - 0.05 * x.T @ g, b - 0.05 * g.sum(axis=0)
        else:
            loss = float("nan")
        printed.append(repr(loss))
        w, b = case(i, w, b)
    return printed, tracer


@pytest.mark.parametrize("case", CASES, ids=[c.__name__ for c in CASES])
def test_tracing_stops_with_one_warning_and_the_loop_goes_on_bit_identically(case):
    untraced, _ = _loop(case, traced=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        traced, tracer = _loop(case, traced=True)
    assert traced == untraced                                  # every number, bit for bit
    ours = [w for w in caught if "tracing stopped" in str(w.message)]
    assert len(ours) == 1 and issubclass(ours[0].category, RuntimeWarning), [str(w.message) for w in caught]
    assert tracer.failed is not None and tracer.failed.split(":")[0] in str(ours[0].message)
    trace = tracer.trace
    assert 1 <= trace.n_steps < 10
    assert any("tracing stopped" in n for n in trace.meta.get("notes", []))


def test_the_clean_twin_is_traced_whole():
    printed, tracer = _loop(lambda i, w, b: (w, b), traced=True)
    assert tracer.failed is None and tracer.trace.n_steps == 10
