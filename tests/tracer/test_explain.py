"""tracer.explain: a step's derivation with this step's numbers."""
from __future__ import annotations

import numpy as np
import pytest

import tracer
from tracer.errors import TraceInputError
from _trace_factories import s0_data, s0_trace


def _fmt_in(value: float, text: str) -> bool:
    return any(f"{value:.{d}g}" in text for d in (6, 7, 8, 9, 10))


def test_step_two_shows_its_own_loss_and_parameters():
    x, y, w, b = s0_data()
    n, lr = len(x), 0.02
    d = (x @ w + b - y) / n
    w2, b2 = w - lr * x.T @ d, b - lr * d.sum(axis=0)
    loss2 = np.sum((x @ w2 + b2 - y) ** 2) / 2 / n
    text = tracer.explain(s0_trace(iterations=3), step=2)
    assert "Step 2" in text
    assert _fmt_in(loss2, text), loss2
    assert _fmt_in(w2.item(), text) and _fmt_in(b2.item(), text)
    assert "d/dx" in text                    # the derivative comes from sympy


def test_a_step_out_of_range_names_the_argument():
    with pytest.raises(TraceInputError, match="step"):
        tracer.explain(s0_trace(iterations=2), step=5)
