"""Non-finite values: the first step, quantity and parameter where inf or NaN appears,
and the operation of the step program that produced it.

A NaN never counts as a passed check; this finding says where it came from: the
recorded loss, prediction, gradient or parameter that first turned non-finite, and
(when the program can be evaluated at that step) the first operation whose inputs
are finite and whose output is not, with the reason in words (log of 0, overflow in
exp, division by zero...).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .base import nonfinite_rows, Diagnosis, finding

if TYPE_CHECKING:
    from .base import Context

__all__ = ["NonFinite", "REASONS"]

REASONS = {
    "log": ("the log of 0 or of a negative number", "keep the argument of log positive (clip it or add a small epsilon)"),
    "log1p": ("log1p of a number <= -1", "keep the argument above -1"),
    "exp": ("an overflow in exp (its argument is too large)", "lower the learning rate or compute the loss from logits"),
    "expm1": ("an overflow in exp", "lower the learning rate"),
    "div": ("a division by zero (or inf / inf)", "make sure the denominator cannot be 0"),
    "reciprocal": ("a division by zero", "make sure the value cannot be 0"),
    "sqrt": ("the square root of a negative number", "keep the argument of sqrt non-negative"),
    "rsqrt": ("1/sqrt of 0 or of a negative number", "keep the argument positive"),
    "pow": ("an overflow (or a negative base) in a power", "lower the learning rate; check the exponent"),
    "square": ("an overflow in a square", "lower the learning rate: the values grew too large"),
    "squared_error": ("an overflow in a squared error", "lower the learning rate: the predictions diverged"),
    "matmul": ("an overflow in a matrix product", "lower the learning rate: the weights grew too large"),
    "sum": ("an overflow in a sum", "lower the learning rate: the values grew too large"),
    "mul": ("an overflow (or 0 * inf) in a product", "lower the learning rate"),
}


class NonFinite(Diagnosis):
    kind = "non_finite"

    def run(self, ctx: Context) -> list[dict]:
        first = _first_recorded(ctx)
        if first is None:
            return []
        step, what, param = first
        why, fix, where = _cause(ctx, step)
        losses = np.asarray(ctx.arrays.steps.get("loss", []), dtype=np.float64)
        grew = ""
        ok = np.isfinite(losses) & (ctx.steps < step)
        if ok.sum() >= 2 and losses[ok][-1] > 10 * max(abs(losses[ok][0]), 1e-300):
            grew = f" Before that the loss grew from {losses[ok][0]:.4g} to {losses[ok][-1]:.4g}: the run diverged."
            if fix is None:
                fix = "lower the learning rate (the run diverged)"
        what_text = f"{what} of {param}" if param else what
        msg = f"The first inf or NaN appears at step {step}, in the recorded {what_text}."
        if why:
            msg += f" It comes from {why}" + (f" (`{where}`)" if where else "") + "."
        msg += grew
        return [finding(self.kind, msg, fix or "find the operation that overflows; lower the learning rate",
                        param=param, step=step, quantity=what)]


def _given(ctx):
    """How many steps were handed each quantity (``meta.capture.given``; older traces:
    a quantity counts as given when some value is finite)."""
    return (ctx.meta.get("capture") or {}).get("given") or {}


def _first_recorded(ctx):
    """(step, quantity, param) of the earliest non-finite recorded value, or None.

    The buffers use NaN for "not recorded" too, so a NaN counts only where the
    quantity was given at every recorded step (or, for old traces, is finite somewhere)."""
    cands = []
    given = _given(ctx)
    n = len(ctx.steps)
    losses = np.asarray(ctx.arrays.steps.get("loss", []), dtype=np.float64)
    loss_given = given.get("loss", 0) == n and n > 0 if given else bool(np.isfinite(losses).any())
    bad = ~np.isfinite(losses) & loss_given
    if bad.any():
        cands.append((int(ctx.steps[np.flatnonzero(bad)[0]]), 0, "loss", None))
    a = ctx.arrays
    if a.sample_pred is not None and a.sample_step.size:
        pred_given = given.get("y_pred", 0) == n if given else False
        badp = ~np.isfinite(a.sample_pred).all(axis=1) & (pred_given | ~np.isnan(a.sample_pred).all(axis=1))
        if badp.any():
            cands.append((int(a.sample_step[badp].min()), 1, "prediction", None))
    grads_given = given.get("grads") or {}
    proven = ctx.extras.get("finite_rows") or {}
    for name, p in a.params.items():
        for order, key in ((2, "grad"), (3, "after")):
            arr = p[key]
            whole = key == "after" or grads_given.get(name, 0) == len(arr)
            rowbad = _unproven_nonfinite(arr, (proven.get(name) or {}).get(key))
            if not whole and rowbad.any():
                rowbad[rowbad] = ~np.isnan(arr[rowbad]).all(axis=1)
            if rowbad.any():
                cands.append((int(a.param_step[np.flatnonzero(rowbad)[0]]), order,
                              "gradient" if key == "grad" else "value after the update", name))
    if not cands:
        return None
    step, _, what, param = min(cands, key=lambda c: (c[0], c[1]))
    return step, what, param


def _unproven_nonfinite(arr, finite):
    """:func:`nonfinite_rows` of ``arr``, reading only the rows the update check did not
    show finite (``finite``, a row mask, or None; ``finite_rows`` in the checker's context):
    a whole pass over S4's first layer is 144 MB of reads."""
    if finite is None or finite.shape != (len(arr),):
        return nonfinite_rows(arr)
    out = np.zeros(len(arr), dtype=bool)
    rest = np.flatnonzero(~finite)
    if rest.size:
        out[rest] = nonfinite_rows(arr[rest])
    return out


def _cause(ctx, step):
    """(reason, fix, where) from the first program node that turns finite inputs non-finite."""
    if ctx.program is None:
        return None, None, None
    from ...errors import SteptraceError
    from ..recompute import evaluate_step
    try:
        ev = evaluate_step(ctx.trace, step, ctx.program)
    except (SteptraceError, ValueError, IndexError):
        return None, None, None
    for n in ev.program.primitive_nodes:
        out = ev.values.get(n.name)
        if out is None or np.isfinite(out).all():
            continue
        args = [ev.values.get(x) if isinstance(x, str) else np.asarray(x) for x in n.args]
        if all(v is None or np.isfinite(np.asarray(v, dtype=np.float64)).all() for v in args):
            why, fix = REASONS.get(n.op, (f"the operation {n.op}", None))
            return f"{why} in `{n.name} = {n.op}(...)`", fix, n.where
    return None, None, None
