"""Identify what a trace did not declare: the model, the loss, the learning rate.

Hand-written loops rarely say which loss they compute ("sum of squares / 2 / n"?)
or which learning rate they used. Both leave fingerprints in the trace: the
recorded loss equals exactly one candidate loss of the predictions, and
``-update / gradient`` is the learning rate. The checker states what it found, so a
wrong guess is visible rather than silent.
"""
from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING

import numpy as np

from ..errors import SteptraceError
from ..program import Evaluation
from ..program.legacy import loss_tail
from .feed import leaves
from ..program.scratch import empty
from .tolerance import FACTOR

if TYPE_CHECKING:
    from numpy.typing import ArrayLike

    from ..arrays import TraceArrays
    from ..program import StepProgram
    from ..trace import Trace
    from .feed import StepGroup

__all__ = ["guess_linear_model", "identify_loss", "identify_sgd", "candidate_losses"]

#: elements :func:`sgd_rate` reads at most (every k-th of the sampled rows). The update check
#: then verifies every element of every step with the rate found, so this only has to
#: read the rate: 250,000 (S4: every 17th of 32 rows of W1) took 7 ms against 22 for 1,000,000
#: and found the same rates across the test suite's checks
SAMPLE = 250_000

#: squared errors as people write them by hand, first (sum, /2, /n, /2/n, mean, mean/2)
_SQUARED = ([], [2], ["n"], [2, "n"], ["n", "m"], [2, "n", "m"])
_LABELS = {"mse": "mean squared error", "mae": "mean absolute error", "huber": "Huber loss (delta 1)",
           "bce": "binary cross-entropy on probabilities (torch BCELoss)",
           "bce_logits": "binary cross-entropy on logits", "scce_logits": "cross-entropy on logits, class targets",
           "cce_logits": "cross-entropy on logits, probability targets"}


def guess_linear_model(trace: Trace) -> dict | None:
    """A one-layer linear model if the parameter shapes fit ``X W + b`` (or ``X W.T + b``)."""
    arrays = trace.arrays()
    if arrays.inputs is None:
        return None
    k, m = arrays.inputs.shape[1], arrays.targets.shape[1]
    weight = bias = None
    transpose = False
    flat = False
    for name, p in arrays.params.items():
        shape = tuple(p.shape)
        if len(shape) == 2 and shape == (k, m) and weight is None:
            weight = name
        elif len(shape) == 2 and shape == (m, k) and weight is None:
            weight, transpose = name, True
        elif shape == (k,) and m == 1 and weight is None:      # x @ w with a vector w: one output per row
            weight, flat = name, True
        elif shape in ((m,), (1, m), ()) and bias is None:   # a Python float bias is a scalar
            bias = name
    if weight is None or len(arrays.params) > 2 or (len(arrays.params) == 2 and bias is None):
        return None
    return {"kind": "dense_stack", "flat_output": flat,
            "layers": [{"type": "dense", "weight": weight, "bias": bias, "transpose": transpose,
                        "activation": "linear"}]}


def candidate_losses(n_outputs: int, class_targets: bool) -> list[tuple[dict, str]]:
    """``(loss spec, description)`` to try, most common first: the squared errors people write
    by hand, then the registry's losses with mean and sum reductions."""
    out = []
    for d in _SQUARED:
        label = "sum of squares" + "".join(f" / {f}" for f in d)
        out.append(({"name": "squared_error", "divide_by": list(d)}, label))
    for name in ("mae", "huber", "bce", "bce_logits"):
        for d, how in ((["n", "m"], "mean"), ([], "sum")):
            out.append(({"name": name, "divide_by": d, "convention": "torch"}, f"{_LABELS[name]} ({how})"))
    for name in (("scce_logits",) if class_targets else ()) + (("cce_logits",) if n_outputs > 1 else ()):
        for d, how in ((["n"], "mean"), ([], "sum")):
            out.append(({"name": name, "divide_by": d, "convention": "torch"}, f"{_LABELS[name]} ({how})"))
    return out


def identify_loss(program: StepProgram, arrays: TraceArrays, groups: list[StepGroup], dtype: type[np.floating],
                  recorded_loss: dict, rtol: float = 1e-5) -> tuple[StepProgram | None, str]:
    """The candidate loss whose value equals every recorded loss; returns ``(program with
    that loss, description)`` or ``(None, reason)``."""
    pred, target = program.outputs.get("prediction"), program.outputs.get("target")
    if pred is None or target is None:
        return None, "not identified: the program names no prediction and target"
    group = max(groups, key=lambda g: len(g.steps))
    sub = group.subset(slice(0, min(len(group.steps), 16)))
    actual = np.array([recorded_loss.get(int(s), np.nan) for s in sub.steps])
    if not np.isfinite(actual).any():
        return None, "not identified: no loss values were recorded"
    try:
        ev = Evaluation(program, leaves(program, arrays, sub, dtype), dtype, outputs=("prediction",))
    except SteptraceError as exc:
        return None, f"not identified: {exc}"
    y_hat = ev.values[pred]
    y = ev.values[target]
    m = int(np.prod(y_hat.shape[2:])) if y_hat.ndim > 2 else 1
    t = np.asarray(y)
    class_targets = t.shape[-1] == 1 and m > 1 and np.all(np.equal(np.mod(t, 1), 0))
    has = np.isfinite(actual)
    for spec, label in candidate_losses(m, bool(class_targets)):
        try:
            cand = program.with_loss(loss_tail(spec, pred, target, m, prefix="loss"), "loss")
            value = Evaluation(cand, {**ev.values}, dtype, outputs=("loss",)).loss.astype(np.float64)
        except (SteptraceError, ValueError, IndexError):
            continue
        with np.errstate(invalid="ignore"):
            if np.allclose(value[has], actual[has], rtol=rtol, atol=0):
                return cand, label
    return None, "not identified: the recorded loss is none of the candidate losses (squared errors, MAE, " \
                 "Huber, binary and categorical cross-entropies)"


def sgd_rate(update: ArrayLike, grad: ArrayLike, magnitude: ArrayLike, eps: float,
             finite: bool = False, grad_mag: ArrayLike | None = None,
             work: tuple[np.ndarray, np.ndarray] | None = None) -> float | None:
    """The plain-SGD rate ``lr`` with ``update = -lr * grad``, as a person would have typed it.

    Least squares over the elements gives ``lr``; then the shortest decimal (1 to 8
    significant digits) that explains every element within the update check's own
    tolerance (``8 eps |p| + 64 eps |update|``) is preferred, so a float32 run's rounding
    does not turn ``0.0002`` into ``0.000199992``. None when no gradient is non-zero.
    ``finite``: the caller knows every element is finite (no masks of them are made).
    ``grad_mag``: the rounding magnitudes of a recomputed gradient (a NumPy run records
    none), which the tolerance then includes as the update check does (``FACTOR eps lr M(g)``).
    ``work``: two float64 arrays of the update's size that the caller gives up, with
    ``magnitude`` (float64, its own): the arithmetic then runs in them and in place of the
    magnitude, making no array (S4: 8 MB of fresh pages a check, 734 page faults), the same
    operations on the same values, so the same rate.
    """
    u = np.asarray(update, dtype=np.float64).reshape(-1)
    g = np.asarray(grad, dtype=np.float64).reshape(-1)
    mag = np.asarray(magnitude, dtype=np.float64).reshape(-1)
    gm = None if grad_mag is None else np.asarray(grad_mag, dtype=np.float64).reshape(-1)
    ok = None
    if not finite:
        ok = np.isfinite(u)
        ok &= np.isfinite(g)
        ok &= np.isfinite(mag)
    count = u.size if ok is None else int(ok.sum())
    if count > SAMPLE:
        ok = np.ones(u.size, dtype=bool) if ok is None else ok
        ok &= np.arange(ok.size) % (count // SAMPLE + 1) == 0
    if ok is not None and not ok.all():     # (usually every element is kept: no copies)
        u, g, mag = u[ok], g[ok], mag[ok]
        gm = None if gm is None else gm[ok]
        work = None                 # (not the caller's sizes)
    if work is None:                # fresh buffers (a quarter million elements:
        work = (empty(u.shape, u.dtype), empty(u.shape, u.dtype))    # temporaries cost more than the arithmetic)
        tol = None
    else:
        tol = mag                    # the caller's own: its magnitude is read once, below
    gs, us = work
    top = float(np.max(np.abs(g, out=gs))) if g.size else 0.0
    if not top:
        return None
    au = np.abs(u, out=us)
    umax = max(float(np.max(au)), 1e-300)
    np.divide(g, top, out=gs)
    np.divide(u, umax, out=us)
    lr = -float(np.dot(us, gs)) / float(np.dot(gs, gs)) * (umax / top)
    if not np.isfinite(lr):
        return None
    tol = np.multiply(mag, 8 * eps, out=empty(mag.shape, mag.dtype) if tol is None else tol)
    au = np.abs(u, out=us)
    au *= 64 * eps
    tol += au                        # 8 eps mag + 64 eps |u|, as written
    if gm is not None:
        tol += np.where(np.isfinite(gm), gm, 0.0) * (FACTOR * eps * abs(lr))
    return _shortest(lr, u, g, tol, gs)


def _shortest(lr: float, u: np.ndarray, g: np.ndarray, tol: np.ndarray, work: np.ndarray) -> float:
    """The shortest decimal (1 to 8 significant digits) of ``lr`` with ``|u + cand g| <= tol``
    everywhere (computed in ``work``), else ``lr`` itself."""
    head = slice(0, 4096)           # a candidate most elements refute is refuted on a few first
    for digits in range(1, 9):
        cand = float(f"{lr:.{digits}g}")
        if np.all(np.abs(u[head] + cand * g[head]) <= tol[head]):
            r = np.multiply(g, cand, out=work)
            r += u
            if np.all(np.abs(r, out=r) <= tol):
                return cand
    return lr


def _sample_rows(n: int, most: int = 32) -> np.ndarray:
    """Up to ``most`` recorded steps spread over the run (enough to read a learning rate)."""
    return np.unique(np.linspace(0, n - 1, min(n, most)).astype(np.int64)) if n else np.zeros(0, np.int64)


def _sampled(p, grad, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple | None]:
    """``(update, grad, magnitude, work)`` of the sampled rows, in float64, as
    :func:`sgd_rate` reads them; ``work``, when every sampled element is known finite (each
    row's sum of squares is), is two spare rows of the same array for :func:`sgd_rate` to work in
    (the magnitude is its own too), else None.

    Why not simply convert the rows: :func:`sgd_rate` keeps every k-th element of at most
    :data:`SAMPLE` finite ones; when every sampled element is finite (the usual case) those are
    picked straight from the rows, so 4 million elements are not converted to use a quarter million."""
    size = p.before.shape[1]
    n = rows.size * size
    recorded = getattr(grad, "recorded", None)
    if n > SAMPLE and recorded is not None and getattr(grad, "expected", None) is None:
        picked = _picked_if_finite(p, recorded, rows, n // SAMPLE + 1)
        if picked is not None:
            b, a, g, u, spare = picked
            np.subtract(a, b, out=u)
            mag = np.maximum(np.abs(b, out=b), np.abs(a, out=a), out=b)     # no new temporaries
            return u, g, mag, (a, spare)
    before, after = p.before[rows].astype(np.float64), p.after[rows].astype(np.float64)
    return after - before, grad[rows], np.maximum(np.abs(before), np.abs(after)), None


def _grad_mag(grad, rows: np.ndarray) -> np.ndarray | None:
    """The recomputed gradient's rounding magnitudes at the sampled rows, if it has them."""
    mag_rows = getattr(grad, "mag_rows", None)
    return None if mag_rows is None else mag_rows(rows)


def _picked_if_finite(p, recorded, rows: np.ndarray, k: int) -> np.ndarray | None:
    """Every ``k``-th element of the sampled rows of before, after and the recorded gradient
    (the rows laid end to end), in float64, as rows 0-2 of a ``(5, n)`` array whose rows 3
    and 4 are left for the update and :func:`sgd_rate`'s work (from the check's arena: as fresh
    memory S4's cost 585 page faults a check); None when a sampled row holds a NaN or inf. Each
    row's sum of squares is taken (``np.dot(v, v)``: BLAS, S4 2.9 -> 2.0 ms against a sum): a NaN
    or inf element makes it NaN or inf (its terms are never negative, so no inf - inf), and a
    finite row whose squares overflow only sends the sample the slow way, which picks the same
    elements; its elements are picked while it is in the cache: the rows are read from memory
    once, not twice (S4: 7.7 -> 5.6 ms); they are converted straight into place (not piece by
    piece, then joined: S4's three joins copied 6 MB)."""
    size = p.before.shape[1]
    offsets = [(-i * size) % k for i in range(rows.size)]
    ends = np.cumsum([0] + [len(range(o, size, k)) for o in offsets]).tolist()
    out = empty((5, ends[-1]), np.float64)
    with np.errstate(all="ignore"):
        for i, r in enumerate(rows.tolist()):
            for j, v in enumerate((p.before[r], p.after[r], recorded[r])):
                if not np.isfinite(float(np.dot(v, v))):    # (a sum of squares, see above)
                    return None
                out[j, ends[i]:ends[i + 1]] = v[offsets[i]::k]
    return out


#: the quick sample (``identify_sgd(quick=True)``): :data:`QUICK_RUNS` runs of
#: :data:`QUICK_RUN` consecutive elements spread over each of :data:`QUICK_ROWS` steps spread
#: over the run (S4's W1: 8 x 4,096 of 18 million elements, read as 8 x 8 short runs, not 49 MB).
#: Only a rate the update check then proves may stand on it (tracer.checker.update_rules)
QUICK_ROWS, QUICK_RUNS, QUICK_RUN = 8, 8, 512


def _quick_sampled(p, recorded: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(update, grad, magnitude)`` in float64 at the quick sample's elements (see
    :data:`QUICK_ROWS`) of the recorded gradient ``recorded``: runs of consecutive elements,
    so that a wide parameter's sample reads a few KB, not every cache line of its rows."""
    size = p.before.shape[1]
    if size <= QUICK_RUNS * QUICK_RUN:
        cols = np.arange(size)
    else:
        starts = np.linspace(0, size - QUICK_RUN, QUICK_RUNS).astype(np.int64)
        cols = (starts[:, None] + np.arange(QUICK_RUN)).reshape(-1)
    at = np.ix_(rows, cols)
    b, a = p.before[at].astype(np.float64), p.after[at].astype(np.float64)
    return a - b, recorded[at].astype(np.float64), np.maximum(np.abs(b), np.abs(a))


def identify_sgd(arrays: TraceArrays, grads: dict, eps: float = 2.2e-16,
                 quick: bool = False) -> tuple[dict[str, float] | None, str]:
    """The plain-SGD learning rate that explains the updates (see :func:`sgd_rate`).

    Returns ``(rates, text)`` where rates maps every parameter to the rate most
    parameters share (the odd ones out will then fail their update check, which is
    the point), or ``(None, reason)``. ``quick``: from the quick sample (:data:`QUICK_ROWS`)
    of the recorded gradients (``grads[name].recorded``; no recomputed ones), a rate the
    caller must prove (:mod:`tracer.checker.update_rules`); ``(None, reason)`` also when the
    parameters' rates differ (the full sample then names the odd ones).
    """
    per_param = {}
    for name, p in arrays.params.items():
        if name not in grads:
            continue
        if quick:
            rows = _sample_rows(p.before.shape[0], QUICK_ROWS)
            rate = sgd_rate(*_quick_sampled(p, grads[name].recorded, rows), eps)
        else:
            rows = _sample_rows(p.before.shape[0])      # the update check then verifies every step
            u, g, mag, work = _sampled(p, grads[name], rows)
            rate = sgd_rate(u, g, mag, eps, finite=work is not None, grad_mag=_grad_mag(grads[name], rows),
                            work=work)
        if rate is not None:
            per_param[name] = rate
    if not per_param:
        return None, "no gradients to identify the update rule from"
    lr, odd = _shared_rate(per_param)
    if quick and odd:
        return None, "the quick sample's rates differ"
    from ..display import num
    text = f"updates match SGD with lr {num(lr, 4)} (param -= {num(lr, 4)} * grad)"
    if odd:
        text += "; except " + ", ".join(f"{n} (moves {r:.6g} x grad)" for n, r in odd.items())
    return {name: lr for name in grads}, text


def _shared_rate(per_param: dict[str, float]) -> tuple[float, dict[str, float]]:
    """``(the rate most parameters share, to 4 digits, {parameter: its rate} of the others)``."""
    counts = Counter(float(f"{r:.4g}") for r in per_param.values())
    best = max(counts.values())
    candidates = [v for v, c in counts.items() if c == best]
    positive = [v for v in candidates if v > 0]
    chosen4 = min(positive) if positive else candidates[0]
    lr = next((v for v in per_param.values() if float(f"{v:.4g}") == chosen4), chosen4)
    return lr, {n: r for n, r in per_param.items() if float(f"{r:.4g}") != chosen4}
