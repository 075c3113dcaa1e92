"""Check every recorded update: the optimizer's rule applied to the recorded gradient.

For each parameter and each recorded step the rule (:mod:`tracer.math.optimizers`,
the framework's own equations in sympy) is applied to the value before the step, the
gradient the run used (recorded, or recomputed by the step program where the run
kept none) and the optimizer state before the step (initial at the optimizer's first
step, else the state recorded after the previous step), and compared with the value
after the step and the recorded state. Steps are processed in chunks so memory stays
bounded whatever the run's length.
"""
from __future__ import annotations

import weakref
from typing import TYPE_CHECKING

import numpy as np

from ..errors import SteptraceError
from ..math.clipping import Clipping, transforms_of
from . import update_rules
from .compare import badness, nonfinite_rows, worst_blocks, worst_rows
from .reproduce import reproduced_rows, reproducible
from ..program.scratch import Scratch
from .stateful import _recorded_slot, _used_grad, _value_scale, check_rows, subnormal_floor  # noqa: F401
from .tolerance import FACTOR

if TYPE_CHECKING:
    from ..trace import Trace
    from .report import CheckReport, TableBuilder

__all__ = ["check_updates"]

CHUNK_ELEMENTS = 4 * 1024 * 1024


def check_updates(trace: Trace, report: CheckReport, builder: TableBuilder, eps: float, opt_spec: dict | None,
                  expected_grads: dict[str, np.ndarray], grad_mags: dict[str, np.ndarray] | None = None) -> None:
    """Add update and optimizer-state rows to ``builder``; notes go to ``report``.

    ``expected_grads`` maps a parameter name to ``(n_param_steps, size)`` recomputed
    gradients (NaN where none) for runs that did not record gradients, ``grad_mags`` to
    their rounding magnitudes (0 where the gradient was recorded): an update computed
    from a recomputed gradient is as uncertain as that gradient.
    """
    arrays = trace.arrays()
    param_step = arrays.param_step
    if not arrays.params or param_step.size == 0:
        return
    steps_col = arrays.steps
    step_numbers = np.asarray(steps_col.get("step", []), dtype=np.int64)
    pos = {int(s): i for i, s in enumerate(step_numbers)}
    lookup = np.array([pos.get(int(s), -1) for s in param_step])

    def col(name):
        c = steps_col.get(name)
        if c is None:
            return np.full(param_step.size, np.nan)
        c = np.asarray(c, dtype=np.float64)
        return np.where(lookup >= 0, c[np.maximum(lookup, 0)], np.nan)

    frozen = {n for n, r in (trace.meta.get("update_rule") or {}).items()
              if isinstance(r, dict) and r.get("kind") == "frozen" and n in arrays.params}
    t_rec = col("opt_step")
    if np.isfinite(t_rec).any():
        t = t_rec
    elif opt_spec is not None:
        t = (param_step - param_step.min() + 1).astype(np.float64)
    else:
        t = param_step.astype(np.float64)
    lr_rec = col("lr")
    clip = []                   # made once the rules are known (its notes come after theirs)
    unmodelled = (opt_spec or {}).get("unmodelled") or {}

    def run(rules, out, notes, witness):
        if not clip:
            clip.append(_clipping(trace, report, opt_spec, expected_grads))
        for name, p in arrays.params.items():
            if name in unmodelled:         # the hook saw something the rule does not describe
                notes.cannot_check.append(f"update of {name}: {unmodelled[name]}")
                continue
            if p.before.ndim == 2 and p.before.shape[1] == 0:   # no elements: nothing to compare
                continue
            with update_rules.proving(witness, name):
                _check_param(name, p, rules[name], param_step, t, lr_rec if opt_spec is not None else None,
                             expected_grads.get(name), out, notes, eps, clip[0], (grad_mags or {}).get(name))
    grads = {name: update_rules.RowsOfGrad(p.grad, expected_grads.get(name), (grad_mags or {}).get(name))
             for name, p in arrays.params.items() if name not in frozen} if opt_spec is None else {}
    update_rules.rules_checked(arrays, report, builder, opt_spec, grads, frozen, eps, run)
    clipping = clip[0] if clip else None
    if clipping is not None:
        report.context["clipping"] = {"transforms": clipping.transforms, "active_steps": int(clipping.active.sum()),
                                      "steps": int(param_step.size), "largest": list(clipping.largest)}


def _clipping(trace, report, opt_spec, expected_grads):
    """The gradient clipping the run applied before its updates (None when it applied none)."""
    try:
        transforms = transforms_of(opt_spec, trace.meta)
    except SteptraceError as exc:
        report.cannot_check.append(f"gradient clipping: {exc}")
        return None
    if not transforms:
        return None
    params = trace.arrays().params

    def grad_of(name, i0, i1):
        return _used_grad(params[name], expected_grads.get(name), i0, i1)
    return Clipping(transforms, params, trace.arrays().param_step.size, grad_of)


def _check_param(name, p, rule, param_step, t, lr_rec, expected, builder, report, eps, clipping=None, gmag=None):
    n, size = p.before.shape
    per = max(1, CHUNK_ELEMENTS // max(1, size))
    checked = 0
    proven = {"after": np.zeros(n, dtype=bool), "grad": np.zeros(n, dtype=bool)}
    for i0 in range(0, n, per):
        i1 = min(n, i0 + per)
        if not getattr(rule, "slots", ()):       # no optimizer state: the blocked fast pass
            checked += _check_rows_fast(name, p, rule, param_step, t, lr_rec, expected, builder, eps, clipping,
                                        i0, i1, proven, None if gmag is None else gmag[i0:i1])
        else:
            checked += check_rows(name, p, rule, param_step, t, lr_rec, expected, builder, eps, clipping, i0, i1)
    if proven["after"].any():       # the non-finite diagnosis need not read these rows again
        report.context.setdefault("finite_rows", {})[name] = proven
    if checked == 0:
        report.cannot_check.append(f"update of {name}: no step with a gradient and a known optimizer state")
    elif checked < n:
        report.context.setdefault("partial_updates", {})[name] = (checked, n)


def _check_rows_fast(name, p, rule, param_step, t, lr_rec, expected, builder, eps, clipping, i0, i1, proven,
                     gmag=None):
    """Rows ``i0:i1`` of a rule without state: the rule and the comparison run in the run's
    precision, block by block (:func:`~tracer.checker.compare.worst_blocks`); rows that pass
    does not settle are recomputed in float64, and the reported element always is.

    Every row is first assumed finite (a NaN or inf shows up in the fast pass as a row it
    does not settle); only when such a row is not finite are the finite rows taken apart.
    ``proven`` (``{"after", "grad"}`` -> a mask of the parameter's rows) receives the rows
    whose recorded values the fast pass showed finite (see :func:`_note_finite`). ``gmag``:
    the rounding magnitudes of a recomputed gradient, rows ``i0:i1``."""
    before, after = p.before[i0:i1], p.after[i0:i1]
    g = p.grad[i0:i1]
    if expected is not None or clipping is not None:
        g = _used_grad(p, expected, i0, i1)
        if clipping is not None:
            g = clipping.apply(name, i0, i1, g)
    lr = None if lr_rec is None else lr_rec[i0:i1]
    rows = None
    if lr is not None and not np.isfinite(lr).all():        # the rows decide which rate applies
        rows = np.flatnonzero(~nonfinite_rows(g) & ~nonfinite_rows(before))
    while rows is None or rows.size:
        every = rows is None
        b, a, gk = (before, after, g) if every else (before[rows], after[rows], g[rows])
        tk = t[i0:i1] if every else t[i0:i1][rows]
        lr_k = lr if every or lr is None else lr[rows]
        lr_used = lr_k if lr_k is not None and np.isfinite(lr_k).all() else None
        gm = None if gmag is None else (gmag if every else gmag[rows])
        out = _update_rows(rule, b, a, gk, tk, lr_used, eps, tuple(p.shape), gm)
        if not every or not out[4].size:
            break
        bad_rows = nonfinite_rows(g[out[4]]) | nonfinite_rows(before[out[4]])
        if not bad_rows.any():
            break
        rows = np.flatnonzero(~nonfinite_rows(g) & ~nonfinite_rows(before))
    if rows is not None and not rows.size:
        update_rules.note_reproduced(False)
        return 0
    idx, exp_u, act_u, scale, _, finite, from_grad = out
    _note_finite(proven, i0 + (np.arange(i1 - i0) if rows is None else rows), finite,
                 from_grad and expected is None and clipping is None)
    steps = param_step[i0:i1] if rows is None else param_step[i0:i1][rows]
    builder.add(step=steps, quantity="update", param=name, index=idx, expected=exp_u,
                actual=act_u, scale=scale, rtol=FACTOR * eps, atol=0.0)
    return steps.size


def _note_finite(proven, rows, finite, grad):
    """Parameter rows ``rows`` the fast pass showed finite (mask ``finite``): a NaN or inf in
    ``before`` or ``after`` makes the actual update or its scale non-finite and the row's
    ratio NaN; so does one in the gradient when the expected update is ``g * (-lr)``
    (``grad``: and ``g`` is the recorded gradient). A rule's own expression may drop the
    gradient (a rate of 0)."""
    proven["after"][rows[finite]] = True
    if grad:
        proven["grad"][rows[finite]] = True


def _update_rows(rule, b, a, gk, tk, lr_used, eps, shape, gmag=None):
    """``(worst index, expected, actual, scale, rows the magnitudes decided, rows shown
    finite, whether that covers the gradient)`` per row of the update check of a stateless
    rule (see :func:`_check_rows_fast`). ``gmag``: the gradient's own rounding magnitudes
    (a recomputed gradient), which the rule carries into the update's scale.

    Plain SGD first tries to reproduce the run's arithmetic (:mod:`.reproduce`): a row
    equal to it bit for bit, but for a few elements that pass compared one by one, passes
    without a ratio and reports the worst of those elements (its first element when there
    are none); the other rows get the ratios of :func:`_ratio_rows`."""
    R = b.shape[0]
    dt = np.result_type(b.dtype, gk.dtype, np.float32)
    minus_lr = _minus_rate(rule, lr_used, R, dt)
    if minus_lr is None or R == 0 or not reproducible(dt, b, a, gk, eps):
        update_rules.note_reproduced(R == 0)
        return _ratio_rows(rule, b, a, gk, tk, lr_used, eps, shape, gmag, minus_lr)
    ok, ur, uc = reproduced_rows(b, a, gk, minus_lr)
    f = 8 * eps / (FACTOR * eps)
    idx = np.zeros(R, dtype=np.int64)
    plain = np.ones(R, dtype=bool)
    plain[ur] = False               # rows reproduced at every element: they report their first
    rows = np.concatenate([ur, np.flatnonzero(plain)])
    m = ur.size
    cols = np.zeros(rows.size, dtype=np.int64)
    cols[:m] = uc
    with np.errstate(all="ignore"):  # (a NaN or inf among them: its row goes to the ratios)
        # one float64 evaluation of the rule for the elements not reproduced and the first
        # element of every other row (elementwise: the values of two separate calls)
        e, av, sv = _exact_at(rule, b, a, gk, tk, lr_used, rows, cols, f)
        exp_u, act_u, scale = (np.empty(R, x.dtype) for x in (e, av, sv))
        exp_u[rows[m:]], act_u[rows[m:]], scale[rows[m:]] = e[m:], av[m:], sv[m:]
        if m:                       # the elements not reproduced: compared as the check defines it
            bad = badness(e[:m], av[:m], FACTOR * eps, sv[:m])
            ok[ur[~(bad <= 1.0)]] = False
            order = np.lexsort((-bad, ur))          # per row, its worst first
            first = order[np.r_[True, ur[order][1:] != ur[order][:-1]]]
            idx[ur[first]] = uc[first]
            exp_u[ur[first]], act_u[ur[first]], scale[ur[first]] = e[first], av[first], sv[first]
    rest = np.flatnonzero(~ok)
    update_rules.note_reproduced(not rest.size)     # (a rate read quickly is proven by every row)
    if not rest.size:
        return idx, exp_u, act_u, scale, rest, ok, True
    whole = rest.size == R          # (given up on: no copy of the rows)
    sub = slice(None) if whole else rest
    out = _ratio_rows(rule, b[sub], a[sub], gk[sub], tk[sub], None if lr_used is None else lr_used[sub], eps,
                      shape, None if gmag is None else gmag[sub], minus_lr[sub])
    idx[rest], exp_u[rest], act_u[rest], scale[rest] = out[:4]
    ok[rest] = out[5]
    return idx, exp_u, act_u, scale, rest[out[4]], ok, True


def _ratio_rows(rule, b, a, gk, tk, lr_used, eps, shape, gmag, minus_lr):
    """:func:`_update_rows` by the ratio of every element: a blocked pass in the run's
    precision, then float64 (and the rule's rounding magnitudes) for the rows it does not
    settle. ``minus_lr``: :func:`_minus_rate`."""
    rtol = FACTOR * eps
    R, size = b.shape
    f = 8 * eps / rtol
    dt = np.result_type(b.dtype, gk.dtype, np.float32)

    scratch = Scratch(dt)

    def values(r0, r1, c0, c1):     # the update from its own expression (-lr*g): its digits kept
        bb, aa = b[r0:r1, c0:c1], a[r0:r1, c0:c1]
        act, sc, t, e = scratch.views(bb.shape, 4)     # reused: a fresh block costs its page faults
        if minus_lr is None:
            e = rule.update(bb, gk[r0:r1, c0:c1], tk[r0:r1], None if lr_used is None else lr_used[r0:r1], dtype=dt)
        else:                       # g * (-lr) is (-g) * lr bit for bit: one pass, no temporaries
            np.multiply(gk[r0:r1, c0:c1], minus_lr[r0:r1], out=e, casting="unsafe")
        np.subtract(aa, bb, out=act, casting="unsafe")
        np.abs(bb, out=sc, casting="unsafe")
        np.abs(aa, out=t, casting="unsafe")
        np.maximum(sc, t, out=sc)
        return e, act, np.multiply(sc, dt.type(f), out=sc)

    def exact(sel, cols=None):                        # float64, as the check defines it
        if cols is not None:
            return _exact_at(rule, b, a, gk, tk, lr_used, sel, cols, f)
        b64, a64 = b[sel].astype(np.float64), a[sel].astype(np.float64)
        new, _ = rule.step(b64.reshape((len(sel),) + shape), np.asarray(gk[sel], np.float64).reshape(
            (len(sel),) + shape), {}, tk[sel], None if lr_used is None else lr_used[sel])
        return new.reshape(len(sel), -1) - b64, a64 - b64, _value_scale(b64, a64, f, subnormal_floor(a.dtype))
    # the fast values' own rounding, a few units of dt on the update, in badness units
    slack = 4 * float(np.finfo(dt).eps) / rtol
    finite = np.ones(R, dtype=bool)
    with scratch:
        idx, bad = worst_blocks(R, size, values, exact, rtol, exact_fails=False, slack=slack, finite=finite)
    need = np.flatnonzero(~(bad <= 1.0))
    exp_u, act_u, scale = _exact_at(rule, b, a, gk, tk, lr_used, np.arange(R), idx, f)
    per = max(1, CHUNK_ELEMENTS // 8 // max(1, size))
    for k in range(0, need.size, per):
        sel = need[k:k + per]
        e, av, sv = exact(sel)      # not settled by |value|: the rule's rounding magnitudes decide
        b64 = b[sel].astype(np.float64).reshape((len(sel),) + shape)
        mags = rule.magnitudes(b64, np.asarray(gk[sel], np.float64).reshape(b64.shape), {}, tk[sel],
                               None if lr_used is None else lr_used[sel])
        sv = np.maximum(sv, mags["p"].reshape(len(sel), -1))
        if gmag is not None:        # the rule applied to the gradient's magnitudes: lr * M(g) for SGD
            lr_sel = None if lr_used is None else lr_used[sel]
            gm = rule.magnitudes(b64, np.asarray(gmag[sel], np.float64).reshape(b64.shape), {}, tk[sel], lr_sel)
            sv = np.maximum(sv, gm["p"].reshape(len(sel), -1))
        j, _ = worst_rows(e, av, rtol, sv)
        q = np.arange(len(sel))
        idx[sel], exp_u[sel], act_u[sel], scale[sel] = j, e[q, j], av[q, j], sv[q, j]
    return idx, exp_u, act_u, scale, need, finite, minus_lr is not None


def _minus_rate(rule, lr_used, R, dt):
    """``-lr`` per row, shaped ``(R, 1)`` in ``dt``, when the rule's update is exactly ``-lr*g``
    (plain SGD: what :meth:`update` evaluates, ``-g*lr``, in two passes); else None."""
    if not _is_minus_lr_g(rule):
        return None
    return -np.broadcast_to(np.asarray(rule.lr if lr_used is None else lr_used, dtype=dt), (R,)).reshape(R, 1)


#: rule -> whether its update is ``-lr*g``: a sympy expansion costs ~0.2 ms, and the update
#: check asks once per parameter and block of rows (rules are cached, so the same objects)
_MINUS_LR_G: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _is_minus_lr_g(rule) -> bool:
    known = _MINUS_LR_G.get(rule)
    if known is None:
        import sympy as sp
        eqs = rule.equations(numeric=True)
        sym = {x.name: x for x in eqs[0][1].free_symbols} if len(eqs) == 1 else {}
        known = not (getattr(rule, "slots", ()) or eqs[0][0] != "p" or set(sym) != {"p", "g", "lr"} or
                     sp.expand(eqs[0][1] - (sym["p"] - sym["lr"] * sym["g"])) != 0)
        _MINUS_LR_G[rule] = known
    return known


def _exact_at(rule, b, a, g, t, lr_used, rows, cols, f):
    """``(expected update, actual update, quick scale)`` in float64 at one element per row."""
    bb = b[rows, cols].astype(np.float64)
    aa = a[rows, cols].astype(np.float64)
    gg = np.asarray(g[rows, cols], dtype=np.float64)
    new, _ = rule.step(bb[:, None], gg[:, None], {}, t[rows], None if lr_used is None else lr_used[rows])
    return new[:, 0] - bb, aa - bb, _value_scale(bb, aa, f, subnormal_floor(a.dtype))
