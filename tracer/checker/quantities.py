"""Compare one chunk of steps with the step program: loss, predictions, gradients.

For each chunk the program is evaluated once (all steps stacked). A quick comparison
against ``eps * |value|`` settles almost every check; where it does not, the chunk's
rounding magnitudes are computed and decide (see :mod:`tracer.checker.tolerance`).
One check-table row per step and quantity holds its worst element.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ..program import Evaluation
from .compare import badness, worst_per_row
from .feed import leaves
from .tolerance import FACTOR

if TYPE_CHECKING:
    from collections.abc import Collection

    from ..arrays import TraceArrays
    from ..program import StepProgram
    from .feed import StepGroup
    from .report import TableBuilder

__all__ = ["ChunkResult", "check_chunk", "add_worst"]


class ChunkResult:
    """What a chunk contributes beyond table rows: recomputed losses and gradients."""

    def __init__(self, steps):
        self.steps = steps
        self.loss = None                 # (S,) recomputed loss
        self.grads = {}                  # name -> (S, size) recomputed gradient
        self.checked = {}                # quantity key -> number of steps checked
        self.mismatched_grads = []       # names whose recorded gradient has another size


def check_chunk(program: StepProgram, arrays: TraceArrays, sub: StepGroup, dtype: type[np.floating], eps: float,
                builder: TableBuilder, recorded_loss: dict[int, float], want_grads: Collection[str],
                evaluation: Evaluation | None = None) -> tuple[ChunkResult, Evaluation]:
    """Evaluate ``program`` on the steps of ``sub`` and add their check rows to ``builder``.

    ``recorded_loss`` maps step -> recorded loss; ``want_grads`` names the parameters
    whose recomputed gradient the caller needs (the update check of a run that did
    not record gradients).
    """
    ev = evaluation or Evaluation(program, leaves(program, arrays, sub, dtype), dtype)
    res = ChunkResult(sub.steps)
    rtol = FACTOR * eps
    has_loss = program.has_loss
    grads = ev.gradients() if has_loss else {}
    mags = _Mags(ev, has_loss)
    if has_loss:
        res.loss = ev.loss.astype(np.float64)
        actual = np.array([recorded_loss.get(int(s), np.nan) for s in sub.steps])
        has = np.isfinite(actual) | np.isnan(actual) & np.isnan(res.loss)
        if has.any():
            exp = res.loss[has]
            scale = None
            if not worst_per_row(badness(exp[:, None], actual[has][:, None], rtol))[1]:
                scale = mags.value(program.outputs["loss"])[has]
            builder.add(step=sub.steps[has], quantity="loss", expected=exp, actual=actual[has],
                        scale=scale, rtol=rtol, atol=0.0)
            res.checked["loss"] = int(has.sum())
    _predictions(program, arrays, sub, ev, mags, builder, rtol, res)
    for name, g in grads.items():
        p = arrays.params[name]
        g = g.reshape(len(sub.steps), -1)
        rec = p.grad[sub.param_pos]
        if rec.shape[1] != g.shape[1]:
            res.mismatched_grads.append((name, rec.shape[1], g.shape[1]))
            continue
        has = ~np.isnan(rec).all(axis=1)
        if has.any():
            r = rec if has.all() else rec[has]
            e = g if has.all() else g[has]
            bad = badness(e, r, rtol)
            scale = None
            if not worst_per_row(bad)[1]:
                scale = mags.grad(name).reshape(len(sub.steps), -1)[has]
                bad = badness(e, r, rtol, scale)
            add_worst(builder, "grad", name, sub.steps[has], e, r, scale, rtol, bad=bad)
            res.checked["grad:" + name] = int(has.sum())
        if name in want_grads:
            res.grads[name] = g
    return res, ev


class _Mags:
    """The chunk's rounding magnitudes, computed on first use."""

    def __init__(self, ev, has_loss):
        self.ev, self.has_loss = ev, has_loss

    def value(self, name):
        return self.ev.magnitudes()[name].reshape(self.ev.values[name].shape).astype(np.float64)

    def grad(self, name):
        return self.ev.gradient_magnitudes()[name].astype(np.float64)


def _predictions(program, arrays, sub, ev, mags, builder, rtol, res):
    pred = ev.prediction
    if pred is None or arrays.sample_pred is None or sub.rows is None:
        return
    rec = _recorded_predictions(arrays, sub)
    if rec is None:
        return
    S = len(sub.steps)
    y_hat = np.asarray(pred, dtype=np.float64)
    if y_hat.shape[0] != S or y_hat.size != rec.size:
        builder.add_cannot_check(step=sub.steps, quantity="prediction")
        res.checked["prediction"] = 0
        return
    y_hat = y_hat.reshape(rec.shape)
    has = ~np.isnan(rec).all(axis=(1, 2))
    if not has.any():
        return
    e, a = y_hat[has], rec[has]
    m = rec.shape[2]
    flat_e, flat_a = e.reshape(int(has.sum()), -1), a.reshape(int(has.sum()), -1)
    bad = badness(flat_e, flat_a, rtol)
    scale = None
    if not worst_per_row(bad)[1]:
        scale = mags.value(program.outputs["prediction"]).reshape(rec.shape)[has].reshape(flat_e.shape)
        bad = badness(flat_e, flat_a, rtol, scale)
    worst = add_worst(builder, "prediction", None, sub.steps[has], flat_e, flat_a, scale, rtol,
                      index_mode="sample", rows=sub.rows[has], width=m, bad=bad)
    res.checked["prediction"] = int(has.sum())
    return worst


def _recorded_predictions(arrays, sub):
    """Recorded predictions of the chunk's steps, ``(S, B, m)`` in row order."""
    from .feed import rows_of_steps
    keys, starts, counts, order = _cached_order(arrays, rows_of_steps)
    pos = np.searchsorted(keys, sub.keys)
    B = sub.rows.shape[1]
    idx = order[starts[pos][:, None] + np.arange(B)[None, :]]
    return arrays.sample_pred[idx].astype(np.float64)


def _cached_order(arrays, fn):
    cached = getattr(arrays, "_step_order", None)
    if cached is None:
        cached = fn(arrays)
        try:
            object.__setattr__(arrays, "_step_order", cached)
        except (AttributeError, TypeError):
            pass
    return cached


def add_worst(builder: TableBuilder, quantity: str, name: str | None, steps: np.ndarray, expected: np.ndarray,
              actual: np.ndarray, scale: np.ndarray | None, rtol: float, index_mode: str = "index",
              rows: np.ndarray | None = None, width: int | None = None,
              bad: np.ndarray | None = None) -> np.ndarray:
    """One row per step: the element furthest outside its tolerance (NaN counts as worst).

    ``bad`` is :func:`~tracer.checker.compare.badness` when the caller computed it already."""
    if bad is None:
        bad = badness(expected, actual, rtol, scale)
    worst, _ = worst_per_row(bad)
    r = np.arange(len(worst))
    sc = None if scale is None else scale[r, worst]
    if index_mode == "sample":
        builder.add(step=steps, quantity=quantity, sample=rows[r, worst // width],
                    index=worst % width if width > 1 else None, expected=expected[r, worst],
                    actual=actual[r, worst], scale=sc, rtol=rtol, atol=0.0)
    else:
        builder.add(step=steps, quantity=quantity, param=name, index=worst, expected=expected[r, worst],
                    actual=actual[r, worst], scale=sc, rtol=rtol, atol=0.0)
    return worst
