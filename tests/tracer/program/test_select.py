"""The step program's Piecewise evaluation equals ``np.select`` bit for bit, faster.

Why: relu, clamp, hardtanh, leaky_relu, comparisons and their derivatives are sympy
Piecewise expressions; NumPy's ``select`` assigns through boolean masks, which on
ReLU's random sign pattern costs about ten times a plain pass, on every step. The
replacement (``tracer.program.symbolic._np_select``) must give the same numbers (NaN,
signed zeros and infinities included), the same dtype and the same shape.
"""
from __future__ import annotations

import numpy as np

from tracer.program.registry import get_op
from tracer.program.symbolic import _np_select


def test_select_equals_numpy_select_bit_for_bit():
    rng = np.random.default_rng(1)
    for trial in range(1500):
        dt = (np.float32, np.float64)[trial % 2]
        shape = ((5, 7), (3, 1, 4), (6,), ())[trial % 4]
        x = rng.standard_normal(shape).astype(dt)
        if x.size >= 3:
            x.flat[:3] = [np.nan, -0.0, np.inf]
        y = rng.standard_normal(shape[-1:]).astype(dt)
        pool = [0, 1, 0.01, -2, 2.5, -1] + ([x, y, np.abs(x), -x, y * 2, np.float32(0.5), np.arange(y.size),
                                              y > 0] if trial % 3 else [])
        conds = [x < rng.normal(), x > y, np.isnan(x), True, False, x == 0, y > 0][:rng.integers(1, 8)]
        rng.shuffle(conds)
        if rng.random() < 0.7:
            conds.append(True)
        choices = [pool[i] for i in rng.integers(0, len(pool), size=len(conds))]
        ref = np.select(conds, choices, default=np.nan)
        got = _np_select(conds, choices, default=np.nan)
        assert (got.dtype, got.shape) == (ref.dtype, ref.shape)
        assert got.tobytes() == ref.tobytes(), (conds, choices)


def test_relu_and_its_derivatives_are_printed_through_it():
    f, fm, d, dm = get_op("relu")._compiled({})
    x = np.array([-1.0, -0.0, 0.0, 2.0, np.nan, np.inf, -np.inf], dtype=np.float32)
    import inspect
    assert "select_(" in inspect.getsource(f) and "select_(" in inspect.getsource(d[0])
    with np.errstate(invalid="ignore"):
        ref = np.select([np.less_equal(x, 0), True], [0, x], default=np.nan)
    assert f(x).tobytes() == ref.tobytes()
    assert d[0](x).tobytes() == np.select([np.less_equal(x, 0), True], [0, 1], default=np.nan).tobytes()
