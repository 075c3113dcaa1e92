"""The update check of a rule with optimizer state (momentum, RMSprop, Adam...), in float64
with every state slot checked too, and what it shares with the stateless fast pass of
:mod:`tracer.checker.updates`: the gradient the update used, the value scale and its floor.

Apart from :mod:`~tracer.checker.updates` so that each stays one concept: there the
blocked run-precision pass of stateless rules; here the state before each step (initial
at the optimizer's first step, else the recorded state after the previous step).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .compare import badness, worst_per_row
from .quantities import add_worst
from .tolerance import FACTOR

if TYPE_CHECKING:
    from ..arrays import ParamArrays
    from ..math.clipping import Clipping
    from ..math.optimizer_rule import OptimizerRule
    from .report import TableBuilder

__all__ = ["check_rows", "subnormal_floor"]


def _used_grad(p, expected, i0, i1):
    """The gradient rows the update used: recorded, else the program's recomputation."""
    g = p.grad[i0:i1].astype(np.float64)
    if expected is not None:
        g = np.where(np.isnan(g), expected[i0:i1], g)
    return g


def check_rows(name: str, p: ParamArrays, rule: OptimizerRule, param_step: np.ndarray, t: np.ndarray,
               lr_rec: np.ndarray | None, expected: np.ndarray | None, builder: TableBuilder, eps: float,
               clipping: Clipping | None, i0: int, i1: int) -> int:
    """Rows ``i0:i1`` of a rule with optimizer state, in float64 (state slots checked too);
    returns how many rows were checked."""
    rtol = FACTOR * eps
    shape = tuple(p.shape)
    before = p.before[i0:i1].astype(np.float64)
    after = p.after[i0:i1].astype(np.float64)
    g = _used_grad(p, expected, i0, i1)
    if clipping is not None:
        g = clipping.apply(name, i0, i1, g)
    ok = np.isfinite(g).all(axis=1) & np.isfinite(before).all(axis=1)
    state, state_ok = _state_before(rule, p, before, param_step, t, i0, i1, shape)
    ok &= state_ok
    if not ok.any():
        return 0
    k = int(ok.sum())
    every = k == len(ok)                   # the common case: no row is left out, no copies
    b_ok = before if every else before[ok]
    a_ok = after if every else after[ok]
    sb = {s: (v if every else v[ok]).reshape((k,) + shape) for s, v in state.items()}
    lr_used = None
    if lr_rec is not None and np.isfinite(lr_rec[i0:i1][ok]).all():
        lr_used = lr_rec[i0:i1][ok]
    args = (b_ok.reshape((k,) + shape), (g if every else g[ok]).reshape((k,) + shape), sb, t[i0:i1][ok],
            lr_used)
    new_p, new_state = rule.step(*args)
    mags = _LazyMags(rule, args, k)
    exp_update = np.asarray(new_p).reshape(k, -1) - b_ok
    act_update = a_ok - b_ok
    # the recorded update carries the rounding of the value itself: eps * |p| per step
    scale = _value_scale(b_ok, a_ok, 8 * eps / rtol, subnormal_floor(p.after.dtype))
    bad = badness(exp_update, act_update, rtol, scale)
    if not worst_per_row(bad)[1]:          # not conclusive: the rule's rounding magnitudes decide
        scale = np.maximum(scale, mags.of("p"))
        bad = badness(exp_update, act_update, rtol, scale)
    steps = param_step[i0:i1][ok]
    add_worst(builder, "update", name, steps, exp_update, act_update, scale, rtol, bad=bad)
    for slot, value in new_state.items():
        rec = _recorded_slot(p, slot)
        if rec is None:
            continue
        floor = subnormal_floor(rec.dtype)
        r = rec[i0:i1][ok].astype(np.float64)
        ev = np.asarray(value, dtype=np.float64).reshape(r.shape)
        sc = np.full(r.shape[0], floor)        # one scale per row, as add_worst reads it
        bad = badness(ev, r, rtol, floor)
        if not worst_per_row(bad)[1]:
            sc = np.maximum(mags.of(slot), floor)
            bad = badness(ev, r, rtol, sc)
        add_worst(builder, slot, name, steps, ev, r, sc, rtol, bad=bad)
    return k


def subnormal_floor(dtype: np.dtype) -> float:
    """The smallest scale a recorded value of ``dtype`` is compared at: its smallest normal
    number. Below it (subnormals, e.g. Adam's first moment of a gradient that stopped long
    ago) float32 keeps a fixed absolute spacing, 2**-149, not a relative one, so a relative
    tolerance alone read a correctly rounded 5.6e-45 for 5.04e-45 as a failure."""
    dt = np.dtype(dtype)
    return float(np.finfo(dt).tiny) if dt.kind == "f" else 0.0


def _value_scale(before, after, factor: float, floor: float) -> np.ndarray:
    """``max(|before|, |after|) * factor``, at least ``floor`` (:func:`subnormal_floor`), in
    one array: ``before`` is finite on the rows checked, so a NaN ``after`` comes out NaN
    as with NumPy."""
    out = np.abs(before)
    np.maximum(out, np.abs(after), out=out)
    out *= np.float64(factor)
    return np.maximum(out, floor, out=out)


class _LazyMags:
    """The rule's rounding magnitudes for a chunk, computed on first use (flattened rows)."""

    def __init__(self, rule, args, k):
        self.rule, self.args, self.k, self.done = rule, args, k, None

    def of(self, name):
        if self.done is None:
            self.done = self.rule.magnitudes(*self.args)
        return self.done[name].reshape(self.k, -1)


def _recorded_slot(p, slot):
    from ..math.optimizers import SLOT_ALIASES    # Keras 3 calls Adam's m/v momentum/velocity
    for name in (slot, *SLOT_ALIASES.get(slot, ())):
        if name in p.slots:
            return p.slots[name]
    return None


def _state_before(rule, p, before, param_step, t, i0, i1, shape):
    """Optimizer state before each step of rows ``i0:i1``: the initial state at the
    optimizer's first step, else the recorded state after the previous step (when that
    step was recorded right before)."""
    slots = list(getattr(rule, "slots", ()) or ())
    n = i1 - i0
    ok = np.ones(n, dtype=bool)
    if not slots:
        return {}, ok
    init = rule.initial_state(before.reshape((n,) + shape))
    first = np.asarray(t[i0:i1]) == 1
    prev_steps = param_step[max(i0 - 1, 0):i1 - 1]
    consecutive = np.zeros(n, dtype=bool)
    if i0 == 0:
        consecutive[1:] = np.diff(param_step[0:i1]) == 1
    else:
        consecutive[:] = param_step[i0:i1] - prev_steps == 1
    state = {}
    for slot in slots:
        init_v = np.asarray(init[slot], dtype=np.float64).reshape(n, -1)
        rec = _recorded_slot(p, slot)
        prev = np.full_like(init_v, np.nan)
        if rec is not None:
            if i0 == 0:
                prev[1:] = rec[0:i1 - 1]
            else:
                prev[:] = rec[i0 - 1:i1 - 1]
        state[slot] = np.where(first[:, None], init_v, prev)
        ok &= first | (consecutive & np.isfinite(prev).all(axis=1))
    return state, ok
