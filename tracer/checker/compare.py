"""Element-by-element comparison: how far outside its tolerance each element is.

Why blocked: a gradient check on a 500 x 256 weight over 140 steps compares 18 million
pairs. A whole-chunk temporary costs more than the arithmetic on it (first touch of
fresh memory is about 1.3 ms per MB), so :func:`worst_rows` walks the pairs in blocks
of :data:`BLOCK` elements through scratch buffers (:mod:`tracer.program.scratch`, reused
from one call to the next within a check), in the run's precision (float32 for a float32
run), and keeps per row only the worst element.
Only rows that this fast pass does not settle (badness above :data:`CONCLUSIVE`, or
NaN/inf) are recomputed in float64 by :func:`badness`, the exact definition.
"""
from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

import numpy as np

from ..program.scratch import ARENA_MIN, Scratch

if TYPE_CHECKING:
    from collections.abc import Callable

    from numpy.typing import ArrayLike

__all__ = ["badness", "worst_per_row", "worst_rows", "worst_rows_pair", "worst_blocks", "nonfinite_rows", "all_nan_rows", "BLOCK",
           "CONCLUSIVE"]

#: elements per block of the fast pass: 1 MB of float32. Larger than the 1 MB cache a core
#: has here, but each block costs a dozen NumPy calls of fixed cost: measured on S4's
#: 140 x 128,000 gradients and updates, 64 Ki elements took 30% longer, 1 Mi longer again
BLOCK = 256 * 1024
#: a row whose fast (run-precision) badness is at most this passes for certain: the fast
#: ratio is within a few units of float32 rounding of the exact one, far below 1e-4
CONCLUSIVE = 1.0 - 1e-4


def badness(expected: ArrayLike, actual: ArrayLike, rtol: float, scale: ArrayLike | None = None) -> np.ndarray:
    """``|e - a| / (rtol * max(|e|, |a|, scale))``, with NaN (either side) as inf, in float64.

    A check passes where the result is at most 1.
    """
    e = np.asarray(expected, dtype=np.float64)
    a = np.asarray(actual, dtype=np.float64)
    mag = np.maximum(np.abs(e), np.abs(a))
    if scale is not None:
        mag = np.maximum(mag, np.asarray(scale, dtype=np.float64))
    with np.errstate(all="ignore"):
        out = np.abs(e - a) / (np.float64(rtol) * mag + 1e-300)
    out[np.isnan(out)] = np.inf
    return out


def worst_per_row(bad: np.ndarray) -> tuple[np.ndarray, bool]:
    """``(index of the worst element of each row, every element within tolerance)``."""
    flat = bad.reshape(bad.shape[0], -1)
    worst = flat.argmax(axis=1)
    top = flat[np.arange(flat.shape[0]), worst]
    return worst, bool(np.all(top <= 1.0))


def worst_rows(expected: np.ndarray, actual: np.ndarray, rtol: float, scale: np.ndarray | None = None,
               exact_fails: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Per row of ``(R, ...)`` arrays: ``(index of the worst element, its float64 badness)``.

    The same numbers as ``worst_per_row(badness(...))`` row by row, without a whole-array
    temporary: a blocked fast pass in the inputs' precision picks each row's worst element;
    rows it does not settle are recomputed exactly. For a row the fast pass settles, the
    element reported may differ from the float64 arg-max only between elements whose
    badness agrees to float32 rounding (both far within tolerance). With ``exact_fails``
    False, rows clearly outside tolerance (or holding a NaN) keep their fast badness
    (inf for NaN): for a caller that only needs to know that they fail.
    """
    R = expected.shape[0]
    e, a = expected.reshape(R, -1), actual.reshape(R, -1)
    s = None if scale is None else np.broadcast_to(scale, expected.shape).reshape(R, -1)

    def values(r0, r1, c0, c1):
        return e[r0:r1, c0:c1], a[r0:r1, c0:c1], None if s is None else s[r0:r1, c0:c1]

    def exact(rows, cols=None):
        at = rows if cols is None else (rows, cols)
        return e[at], a[at], None if s is None else s[at]
    return worst_blocks(R, e.shape[1], values, exact, rtol, exact_fails)


def worst_rows_pair(expected: np.ndarray, actual: np.ndarray, rtol: float, scale: np.ndarray,
                    rtol2: float) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """:func:`worst_rows` twice in one streaming pass (``exact_fails`` False): against
    ``max(|e|, |a|)`` at ``rtol``, and against ``max(|e|, |a|, scale)`` at ``rtol2``. Each
    pair of blocks is read once and its differences and magnitudes serve both (the
    checker's quick comparison and its comparison against a lower bound of the rounding
    magnitudes, :mod:`tracer.checker.tolerance`). A row that clearly fails the first
    comparison (as long rows of a gradient with cancellations all do) keeps a fast badness
    above 1 from its first elements only, and its index is not its worst: the caller only
    needs to know that it fails. ``scale`` may be a factored bound (``block(r0, r1, c0, c1,
    out)`` and ``at(rows, cols)``, :class:`~tracer.program.matmul.LowProduct`): each block of
    it is then computed into a scratch buffer just before it is compared, never stored whole."""
    R = expected.shape[0]
    e, a = expected.reshape(R, -1), actual.reshape(R, -1)
    factored = hasattr(scale, "block")
    s = scale.reshape(R, -1) if factored else np.broadcast_to(scale, expected.shape).reshape(R, -1)
    buf = Scratch(np.dtype(s.dtype)) if factored else None

    def values(r0, r1, c0, c1):
        if factored:        # the bound's block is computed into a scratch buffer: the pass may write over it
            return e[r0:r1, c0:c1], a[r0:r1, c0:c1], _Own(s.block(r0, r1, c0, c1, buf.views((r1 - r0, c1 - c0), 1)[0]))
        return e[r0:r1, c0:c1], a[r0:r1, c0:c1], s[r0:r1, c0:c1]

    def exact(rows, cols=None):
        at = rows if cols is None else (rows, cols)
        return e[at], a[at], None

    def exact2(rows, cols=None):
        at = rows if cols is None else (rows, cols)
        if factored:
            return e[at], a[at], np.asarray(s[rows]) if cols is None else s.at(rows, cols)
        return e[at], a[at], s[at]
    with buf if factored else contextlib.nullcontext():
        (i1, f1), (i2, f2) = _fast_worst(R, e.shape[1], values, rtol / CONCLUSIVE * (1 + 1e-6), pair=True,
                                         recorded=max(rtol, rtol2) > OWN_RTOL or e.shape[1] < PROBE)
    return (_finish(R, e.shape[1], i1, f1, exact, rtol, False, 0.0),
            _finish(R, e.shape[1], i2, f2, exact2, rtol2, False, 0.0))


def worst_blocks(R: int, N: int, values: Callable, exact: Callable, rtol: float, exact_fails: bool = True,
                 slack: float = 0.0, finite: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """:func:`worst_rows` over values made block by block: ``values(r0, r1, c0, c1)`` gives
    ``(expected, actual, scale or None)`` of rows ``r0:r1``, columns ``c0:c1`` in the run's
    precision (the caller computes them there, e.g. an update rule); ``exact(rows)`` the
    same of whole rows, as exactly as the check defines them (float64), ``exact(rows, cols)``
    of one element per row. ``slack`` is how far (in badness) the fast values' own rounding
    may move a badness: rows within it of 1 are recomputed exactly. ``finite`` (a boolean
    array of ``R``), when given, is set where the fast pass compared every element of the row
    and no ratio was NaN: a NaN or inf in the values makes its ratio NaN, so those rows'
    values are finite (:func:`_fast_worst`)."""
    top = 1.0 / CONCLUSIVE + slack
    idx, fast = _fast_worst(R, N, values, None if exact_fails else rtol * top, finite=finite,
                            recorded=rtol > OWN_RTOL or N < PROBE)
    return _finish(R, N, idx, fast, exact, rtol, exact_fails, slack)


def _finish(R, N, idx, fast, exact, rtol, exact_fails, slack):
    """From the fast pass's per-row worst (``idx``, ratio ``fast``) to float64 badness:
    settled rows at their worst element only, rows clearly failing (``exact_fails``
    False) as they are, the others element by element (see :func:`worst_blocks`)."""
    top = 1.0 / CONCLUSIVE + slack
    bad = np.full(R, np.inf)
    ratio = fast / rtol
    done = ratio <= CONCLUSIVE - slack
    settled = np.flatnonzero(done)
    if settled.size:
        e, a, s = exact(settled, idx[settled])
        bad[settled] = badness(e, a, rtol, s)
    if not exact_fails:
        clear = ~(ratio <= top)
        bad[clear] = np.where(np.isnan(ratio[clear]), np.inf, ratio[clear])
        done |= clear
    rest = np.flatnonzero(~done)              # (masks: set operations cost ~100 us a call)
    per = max(1, BLOCK // max(1, N))
    for k in range(0, rest.size, per):
        rows = rest[k:k + per]
        e, a, s = exact(rows)
        b = badness(e, a, rtol, s).reshape(rows.size, -1)
        j = b.argmax(axis=1)
        idx[rows], bad[rows] = j, b[np.arange(rows.size), j]
    return idx, bad


def _fast_worst(R, N, values, enough=None, pair=False, finite=None, recorded=True):
    """Per row: the arg-max of ``|e - a| / (max(|e|, |a|, s) + tiny)`` and that ratio, in blocks
    of :data:`BLOCK` elements through reused buffers (NaN where a block holds a NaN: such
    rows are left to the exact pass). Rows whose ratio already exceeds ``enough`` skip
    their remaining blocks (the caller only needs to know that they fail). ``pair``: both
    the ratio without ``s`` and the one with it, as two ``(index, ratio)`` results; there
    ``enough`` applies to the first, and a row whose first elements already exceed it
    skips that ratio (:func:`_probe`). ``finite``: see :func:`worst_blocks` (not with ``pair``)."""
    k, w = max(1, BLOCK // max(1, N)), min(N, BLOCK)
    out = [(np.zeros(R, dtype=np.int64), np.full(R, -1.0)) for _ in range(2 if pair else 1)]
    scratch = None
    with np.errstate(all="ignore"):
        for r0 in range(0, R, k):
            r1 = min(R, r0 + k)
            for c0 in range(0, N, w):
                if c0 and enough is not None and not pair and not (out[0][1][r0:r1] <= enough).any():
                    if finite is not None:          # the rest of these rows is not compared
                        finite[r0:r1] = False
                    break
                c1 = min(N, c0 + w)
                eb, ab, sb = values(r0, r1, c0, c1)
                own = isinstance(sb, _Own)
                sb = sb.array if own else sb
                if scratch is None:
                    scratch = _buffers(_fast_dtype(eb, ab, sb), min(k, R), w)
                dt, views = scratch.dtype, scratch.views((r1 - r0, c1 - c0), 3)
                if not pair:
                    _keep(out[0], _ratios(eb, ab, sb, views, dt, recorded), r0, c0, first=c0 == 0)
                    continue
                d, m, t = _pair_ratios(eb, ab, sb, views, dt, recorded, own and sb.dtype == dt)
                _keep(out[1], t, r0, c0, first=c0 == 0)
                if enough is None or _probe(out[0], d, m, dt, r0, c0, enough):
                    np.add(m, _tiny(dt), out=m)
                    _keep(out[0], np.divide(d, m, out=m), r0, c0)
    if scratch is not None:
        scratch.release()
    if finite is not None:      # (an inf ratio needs |a| out of the scale: not proven finite then)
        finite &= np.isfinite(out[0][1]) & (out[0][1] >= 0)
    return out if pair else out[0]


def _buffers(dt, k, w):
    """The pass's three block buffers (``views``, ``release``, as :class:`Scratch`): from the
    check's arena when a block is arena-sized (reused pages), else plain arrays (a loss,
    a bias: finding an arena block scans the arena, which costs more than they do)."""
    if k * w * dt.itemsize >= ARENA_MIN:
        scratch = Scratch(dt)
        scratch.views((k, w), 3)                 # the largest block first
        return scratch
    return _Plain(dt, k * w)


class _Plain:
    """Three small flat buffers viewed in each block's shape (see :func:`_buffers`)."""

    def __init__(self, dt, n):
        self.dtype, self.bufs = dt, [np.empty(n, dtype=dt) for _ in range(3)]

    def views(self, shape, count):
        n = shape[0] * shape[1]
        return [b[:n].reshape(shape) for b in self.bufs[:count]]

    def release(self):
        self.bufs = []


_TINY = {}


def _tiny(dt):
    """The smallest normal number of float dtype ``dt``, as a scalar of it (cached)."""
    t = _TINY.get(dt)
    if t is None:
        t = _TINY[dt] = dt.type(np.finfo(dt).tiny)
    return t


def _keep(result, ratio, r0, c0, first=False):
    """Fold one block's ratios into the running ``(index, ratio)`` of its rows: a larger
    ratio or a NaN replaces the row's worst, and a NaN stays (``~(v <= best)`` holds for
    a larger or a NaN ratio, ``best == best`` for a worst that is not NaN). ``first``: the
    rows' first block, taken as it is (every ratio is at least 0 or NaN: each replaces
    the starting -1)."""
    idx, best = result
    r1 = r0 + ratio.shape[0]
    j = ratio.argmax(axis=1)
    v = ratio[np.arange(ratio.shape[0]), j]
    if first:
        best[r0:r1], idx[r0:r1] = v, j
        return
    v = v.astype(np.float64)
    bv = best[r0:r1]
    take = ~(v <= bv)
    take &= bv == bv
    np.copyto(bv, v, where=take)
    np.copyto(idx[r0:r1], j + c0, where=take)


#: tolerances up to which the fast passes leave the recorded value out of their scales: a
#: ratio ``r' = |e - a| / max(|e|, s)`` is at least the ratio ``r`` of the definition
#: (a smaller scale), so a row it settles passes; and ``r >= r' / (1 + r')`` (``|a| <= |e| +
#: |e - a|``), so below this tolerance a row whose ``r'`` is clearly above it (past the band
#: :data:`CONCLUSIVE` leaves to the exact recomputation, widened by any ``slack``) fails by
#: ``r`` too: every decision is the definition's, two passes of eight or nine are saved, and
#: only among elements whose ratios agree to within the tolerance (4e-6 in float32) may
#: another be named the worst. Taken for rows of at least :data:`PROBE` elements only (a
#: weight's gradient or update), where the two passes count: a short row (predictions, a
#: loss, a bias) names its worst element as before, ties included
OWN_RTOL = 5e-5
#: elements per row of a block whose first ratio is probed before it is computed in full
PROBE = 4096


def _probe(result, d, m, dt, r0, c0, enough) -> bool:
    """Whether the block (differences ``d``, magnitudes ``m``) still needs its first ratio in
    full: not when every row of it is known to exceed ``enough`` (or to hold a NaN), from
    earlier blocks or from the ratio of its first :data:`PROBE` elements, which is kept."""
    idx, best = result
    r1 = r0 + d.shape[0]
    if not (best[r0:r1] <= enough).any():
        return False
    if d.shape[1] <= 2 * PROBE:
        return True
    head = np.add(m[:, :PROBE], _tiny(dt))
    np.divide(d[:, :PROBE], head, out=head)
    _keep(result, head, r0, c0)
    return bool((best[r0:r1] <= enough).any())


def _ratios(eb, ab, sb, views, dt, recorded=True):
    """``|e - a| / (max(|e|, |a|, s) + tiny)`` of one block in the scratch ``views``; one
    pass per operation, no temporaries. ``recorded`` False leaves ``|a|`` out of the scale
    (:data:`OWN_RTOL`)."""
    d, m, t = views[:3]
    tiny = _tiny(dt)
    np.subtract(eb, ab, out=d, casting="unsafe")
    np.abs(d, out=d)
    np.abs(eb, out=m, casting="unsafe")
    if recorded:
        np.abs(ab, out=t, casting="unsafe")
        np.maximum(m, t, out=m)
    if sb is not None:
        np.maximum(m, sb, out=m, casting="unsafe")
    np.add(m, tiny, out=m)
    np.divide(d, m, out=d)
    return d


def _pair_ratios(eb, ab, sb, views, dt, recorded=True, own=False):
    """``(|e - a|, max(|e|, |a|), |e - a| / (max(|e|, |a|, s) + tiny))`` of one block in the
    scratch ``views``: the ratio without ``s`` is left to the caller (:func:`_probe`).
    ``recorded`` False leaves ``|a|`` out of both scales (:data:`OWN_RTOL`). ``own``: ``sb``
    is the pass's own buffer, the ratio is computed in it (one block buffer fewer in the cache)."""
    d, m, tmp = views[:3]
    t = sb if own else tmp
    np.subtract(eb, ab, out=d, casting="unsafe")
    np.abs(d, out=d)
    np.abs(eb, out=m, casting="unsafe")
    if recorded:
        np.abs(ab, out=tmp, casting="unsafe")
        np.maximum(m, tmp, out=m)
    np.maximum(m, sb, out=t, casting="unsafe")
    np.add(t, _tiny(dt), out=t)
    return d, m, np.divide(d, t, out=t)


class _Own:
    """A block of the scale computed into the pass's own scratch buffer (it may be written over)."""

    def __init__(self, array):
        self.array = array


def _fast_dtype(*arrays) -> np.dtype:
    """The fast pass's precision: the inputs' own, at least float32."""
    dt = np.result_type(*[np.asarray(x).dtype for x in arrays if x is not None])
    return dt if dt.kind == "f" and dt.itemsize >= 4 else np.dtype(np.float32 if dt.kind == "f" else np.float64)


def nonfinite_rows(a: np.ndarray) -> np.ndarray:
    """Per row of ``(steps, size)``: whether it holds a NaN or an inf. One pass (row sums, a
    finite sum means a finite row); only the other rows are looked at element by element."""
    with np.errstate(all="ignore"):
        total = a.sum(axis=1)
    out = np.zeros(a.shape[0], dtype=bool)
    odd = np.flatnonzero(~np.isfinite(total))
    if odd.size:
        out[odd] = ~np.isfinite(a[odd]).all(axis=1)
    return out


def all_nan_rows(a: np.ndarray) -> np.ndarray:
    """Per row: whether every element is NaN (a quantity not recorded at that step); only
    rows whose first element is NaN are read further."""
    out = np.isnan(a[:, 0]) if a.ndim == 2 and a.shape[1] else np.zeros(a.shape[0], dtype=bool)
    if out.any():
        out[out] = np.isnan(a[out]).all(axis=1)
    return out
