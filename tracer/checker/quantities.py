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
from ..program.matmul import LowProduct
from .compare import all_nan_rows, badness, worst_per_row, worst_rows, worst_rows_pair
from .feed import leaves, positions
from .tolerance import FACTOR, LOWER_FACTOR

if TYPE_CHECKING:
    from collections.abc import Callable, Collection

    from ..arrays import TraceArrays
    from ..program import StepProgram
    from .feed import StepGroup
    from .report import TableBuilder

__all__ = ["ChunkResult", "check_chunk", "add_worst", "compare_rows", "Mags"]


#: rows at least this long compute their lower bound first and compare against it and
#: ``|value|`` in one pass (a second pass over them would cost more than the bound)
EAGER_ELEMENTS = 4096


class ChunkResult:
    """What a chunk contributes beyond table rows: recomputed losses and gradients."""

    def __init__(self, steps):
        self.steps = steps
        self.loss = None                 # (S,) recomputed loss
        self.grads = {}                  # name -> (S, size) recomputed gradient
        self.grad_mags = {}              # name -> (S, size) its rounding magnitudes (the update check's scale)
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
    mags = Mags(ev, arrays, sub)
    if has_loss:
        res.loss = ev.loss.astype(np.float64)
        actual = np.array([recorded_loss.get(int(s), np.nan) for s in sub.steps])
        has = np.isfinite(actual) | np.isnan(actual) & np.isnan(res.loss)
        if has.any():
            rows = np.flatnonzero(has)
            compare_rows(builder, "loss", None, sub.steps[has], res.loss[has][:, None], actual[has][:, None], rtol,
                         lambda need: mags.value(program.outputs["loss"], rows[need]).reshape(-1, 1),
                         lambda need: _reshaped(mags.lower_value(program.outputs["loss"], rows[need])),
                         index_mode="none")
            res.checked["loss"] = int(has.sum())
    _predictions(program, arrays, sub, ev, mags, builder, rtol, res)
    for name, g in grads.items():
        p = arrays.params[name]
        g = g.reshape(len(sub.steps), -1)
        rec = p.grad[positions(sub.param_pos)]
        if rec.shape[1] != g.shape[1]:
            res.mismatched_grads.append((name, rec.shape[1], g.shape[1]))
            continue
        if g.shape[1] == 0:                 # a parameter with no elements: checked, vacuously
            res.checked["grad:" + name] = len(sub.steps)
            continue
        has = ~all_nan_rows(rec)
        if has.any():
            rows = np.flatnonzero(has)
            r = rec if has.all() else rec[has]
            e = g if has.all() else g[has]
            compare_rows(builder, "grad", name, sub.steps[has], e, r, rtol,
                         lambda need, name=name, rows=rows: mags.grad(name, rows[need]),
                         lambda need, name=name, rows=rows: mags.lower_grad(name, rows[need]))
            res.checked["grad:" + name] = int(has.sum())
        if name in want_grads:
            res.grads[name] = g
            # the update check compares -lr * g with the recorded update: g carries the
            # recomputation's rounding, eps * M(g), which near a cancellation (a bias gradient
            # of exactly 0) is far above eps * |g|
            res.grad_mags[name] = mags.grad(name)
    return res, ev


def compare_rows(builder: TableBuilder, quantity: str, name: str | None, steps: np.ndarray, expected: np.ndarray,
                 actual: np.ndarray, rtol: float, mag_of: Callable, lower_of: Callable | None = None,
                 **where: object) -> np.ndarray:
    """One check row per step: the quick comparison against ``|value|`` settles most rows;
    the rows it does not are compared against a lower bound of their rounding magnitudes,
    ``lower_of(need)`` (None: no cheaper bound), then the rows still unsettled against the
    magnitudes themselves, ``mag_of(need)`` (a boolean row mask -> ``(k, elements)``),
    computed for those rows only (:mod:`tracer.checker.tolerance`).

    ``where`` passes ``index_mode``, ``rows`` and ``width`` to :func:`add_worst`."""
    eager = lower_of is not None and expected[:1].size >= EAGER_ELEMENTS
    low = lower_of(np.ones(len(expected), dtype=bool)) if eager else None
    if low is not None:                     # long rows: both comparisons in one pass
        low = (low if isinstance(low, LowProduct) else np.asarray(low)).reshape(len(expected), -1)
        idx, need, scale = _quick_and_lower(expected, actual, rtol, low)
    else:
        idx, bad = worst_rows(expected, actual, rtol, exact_fails=False)
        need, scale = ~(bad <= 1.0), None
        low = lower_of(need) if need.any() and lower_of is not None and not eager else None
        if low is not None:
            scale = np.zeros(len(idx))
            _settle(expected, actual, rtol, need, np.asarray(low).reshape(int(need.sum()), -1), idx, scale,
                    LOWER_FACTOR)
    if need.any():
        m = np.asarray(mag_of(need)).reshape(int(need.sum()), -1)
        if scale is None:
            scale = np.zeros(len(idx))      # rows settled by the quick pass: no magnitude
        _settle(expected, actual, rtol, need, m, idx, scale)
    return add_worst(builder, quantity, name, steps, expected, actual, scale, rtol, worst=idx, **where)


def _quick_and_lower(expected, actual, rtol, low):
    """``(worst index, rows still to settle, scale)``: each row against ``|value|``, and
    where that does not pass it, against the lower bound ``low`` (as :func:`_settle`; an
    array, or a :class:`~tracer.program.matmul.LowProduct` multiplied out block by block)."""
    (idx, bad), (j, bad2) = worst_rows_pair(expected, actual, rtol, low, rtol * LOWER_FACTOR)
    need = ~(bad <= 1.0)
    take = need & (bad2 <= 1.0)
    scale = np.zeros(len(idx))
    idx[take] = j[take]
    rows = np.flatnonzero(take)
    at = low.at(rows, j[rows]) if isinstance(low, LowProduct) else low[rows, j[rows]]
    scale[rows] = at.astype(np.float64) * LOWER_FACTOR
    return idx, need & ~take, scale


def _settle(expected, actual, rtol, need, m, idx, scale, lower=None):
    """Compare the rows of ``need`` against the scale ``m`` (one row each): their worst
    element and its scale go to ``idx`` and ``scale``. With ``lower`` (the factor of a
    lower bound ``m``, :data:`LOWER_FACTOR`) only rows that pass take them and leave
    ``need`` (the others go on to the exact magnitudes); they are compared at
    ``rtol * lower`` against ``max(|value|, m)``, which is at least as strict as ``rtol``
    against ``max(|value|, lower * m)`` (the scale reported), with no scaled copy of ``m``."""
    every = bool(need.all())                # often every row: then no copies
    j, b = worst_rows(expected if every else expected[need], actual if every else actual[need],
                      rtol if lower is None else rtol * lower, m, exact_fails=lower is None)
    rows = np.flatnonzero(need)
    take = np.ones(rows.size, dtype=bool) if lower is None else b <= 1.0
    idx[rows[take]] = j[take]
    scale[rows[take]] = m[np.flatnonzero(take), j[take]].astype(np.float64) * (1.0 if lower is None else lower)
    if lower is not None:
        need[rows[take]] = False


class Mags:
    """The chunk's rounding magnitudes, computed on first use, for the rows that need them:
    from the chunk's own evaluation when most rows do, else from an evaluation of just
    those steps (the magnitude products cost as much as the forward pass)."""

    def __init__(self, ev, arrays=None, sub=None):
        self.ev, self.arrays, self.sub = ev, arrays, sub
        self._subs = {}
        self._saves = None

    def _for(self, rows):
        """``(evaluation, row positions in it)`` for chunk rows ``rows`` (None: all)."""
        n = len(self.ev.loss) if self.ev.program.has_loss else None
        if rows is None or len(rows) == n:
            return self.ev, None
        if self.sub is None or n is None or 2 * len(rows) > n:
            return self.ev, rows
        key = np.asarray(rows).tobytes()
        if key not in self._subs:
            from ..program import Evaluation
            part = self.sub.subset(np.asarray(rows))
            self._subs[key] = Evaluation(self.ev.program, leaves(self.ev.program, self.arrays, part, self.ev.dtype),
                                         self.ev.dtype)
        return self._subs[key], None

    def value(self, name: str, rows: np.ndarray | None = None) -> np.ndarray:
        ev, pick = self._for(rows)
        m = ev.magnitudes()[name].reshape(ev.values[name].shape)
        return (m if pick is None else m[pick]).astype(np.float64)

    def grad(self, name: str, rows: np.ndarray | None = None) -> np.ndarray:
        ev, pick = self._for(rows)
        m = ev.gradient_magnitudes()[name]
        m = m.reshape(m.shape[0], -1)
        return m if pick is None else m[pick]

    def lower_value(self, name: str, rows: np.ndarray) -> np.ndarray | None:
        """A lower bound of the magnitudes of value ``name`` at chunk rows ``rows`` (in
        the working precision, as the comparison runs), from the whole chunk's evaluation;
        None where the bound would be the exact walk."""
        if not self._lower_saves():
            return None
        m = self.ev.magnitudes(lower=True)[name].reshape(self.ev.values[name].shape)
        return m if rows.size == m.shape[0] else m[rows]

    def lower_grad(self, name: str, rows: np.ndarray) -> np.ndarray | LowProduct | None:
        """The same for the gradient of parameter ``name`` (a first-layer weight's as its
        factors, :class:`~tracer.program.matmul.LowProduct`: the comparison multiplies them
        out block by block)."""
        if not self._lower_saves():
            return None
        m = self.ev.gradient_magnitudes(lower=True, factored=True)[name]
        m = m.reshape(m.shape[0], -1)
        return m if rows.size == m.shape[0] else m[rows]

    def _lower_saves(self):
        if self._saves is None:
            self._saves = self.ev.lower_saves()
        return self._saves


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
    k, m = int(has.sum()), rec.shape[2]
    flat_e, flat_a = y_hat[has].reshape(k, -1), rec[has].reshape(k, -1)
    rows = np.flatnonzero(has)

    def mag_of(need):
        return mags.value(program.outputs["prediction"], rows[need]).reshape(int(need.sum()), -1)

    def lower_of(need):
        return _reshaped(mags.lower_value(program.outputs["prediction"], rows[need]), int(need.sum()))
    worst = compare_rows(builder, "prediction", None, sub.steps[has], flat_e, flat_a, rtol, mag_of, lower_of,
                         index_mode="sample", rows=sub.rows[has], width=m)
    res.checked["prediction"] = k
    return worst


def _reshaped(m, rows=None):
    """A lower bound as ``(rows, elements)`` (None stays None)."""
    return None if m is None else m.reshape(-1, 1) if rows is None else m.reshape(rows, -1)


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
              bad: np.ndarray | None = None, worst: np.ndarray | None = None) -> np.ndarray:
    """One row per step: the element furthest outside its tolerance (NaN counts as worst).

    ``bad`` is :func:`~tracer.checker.compare.badness` when the caller computed it already;
    ``worst`` the index of each row's worst element (then ``scale`` is one number per row)."""
    if worst is None:
        if bad is None:
            bad = badness(expected, actual, rtol, scale)
        worst, _ = worst_per_row(bad)
    r = np.arange(len(worst))
    sc = None if scale is None else scale if scale.ndim == 1 else scale[r, worst]
    if index_mode == "sample":
        builder.add(step=steps, quantity=quantity, sample=rows[r, worst // width],
                    index=worst % width if width > 1 else None, expected=expected[r, worst],
                    actual=actual[r, worst], scale=sc, rtol=rtol, atol=0.0)
    else:
        builder.add(step=steps, quantity=quantity, param=name, index=None if index_mode == "none" else worst,
                    expected=expected[r, worst],
                    actual=actual[r, worst], scale=sc, rtol=rtol, atol=0.0)
    return worst
