"""Name the usual bug behind a factor between an actual and an expected update.

When a step's update is off by a clean factor, the factor itself says what went
wrong: 0 means the parameter never moved, -1 a sign error, the batch size a
gradient missing its 1/n, 2 an update applied twice.
"""
from __future__ import annotations

import numpy as np


def name_factor(factor: float, batch_size: float | None = None, tol: float = 1e-3) -> str | None:
    """A short diagnosis for ``actual = factor * expected``, or None if none fits."""
    if factor is None or not np.isfinite(factor):
        return None

    def near(value):
        return abs(factor - value) <= tol * max(1.0, abs(value))

    if near(0.0):
        return "the parameter was never updated"
    if near(-1.0):
        return "a sign error: the step went along the gradient (uphill) instead of against it"
    if batch_size and batch_size > 1:
        if near(batch_size):
            return f"a gradient missing the 1/n factor (n = {int(batch_size)})"
        if near(1.0 / batch_size):
            return f"the step was divided by the batch size again (effective lr = lr/{int(batch_size)})"
        if near(2 * batch_size):
            return f"a gradient missing the 1/(2n) factor (n = {int(batch_size)})"
    if near(2.0):
        return "the update was applied twice (or the gradient doubled)"
    if near(0.5):
        return "the update is half the expected one (a missing factor 2 in the gradient?)"
    return None
