"""Update rows that the run's own arithmetic reproduces: plain SGD recomputed bit for bit.

Why: the update check of a wide parameter (S4's W1: 140 steps of 128,000 float32 elements)
computes ratios in about fifteen NumPy passes over 18 million elements. A plain-SGD run
computes ``after = before - lr * g`` in its own precision, so ``before + g * (-lr)``
recomputed in that precision gives the recorded ``after`` exactly for nearly every
element (S4's hand-written ``p -= lr * p.grad / batch_size``: all but 0.0007%; torch's
``add_(g, alpha=-lr)`` rounds once, and differs from it in about as few). Four passes
(product, sum, difference, any) find the elements where it does not, and only those are
compared one by one (:func:`tracer.checker.updates._update_rows`).

Why an element reproduced bit for bit passes (``docs/TOLERANCES.md``, "Updates reproduced
bit for bit"): with ``u`` the unit roundoff of the precision ``dt`` the sum is computed in
and ``eps >= 2 u`` the run's, ``after = fl(before + fl(g * fl(-lr)))`` is within
``4 eps |update| + 2 eps |p| + u * tiny`` of ``before - lr * g`` and of the update the
check computes in float64, under 0.4 of the update check's quick tolerance
``32 eps max(|e|, |a|, |p| / 4, tiny)``; it also passes against any larger scale, so the
row's verdict is the one the element-by-element comparison gives.
"""
from __future__ import annotations

import numpy as np

from ..program.scratch import Scratch

__all__ = ["reproducible", "reproduced_rows", "BLOCK", "MOST_UNEQUAL", "FEW", "SEGMENT"]

#: elements per block: two float32 rows of S4's W1 (128,000 elements each), so that a row
#: a chained recording shares between them (one step's ``after`` is the next one's
#: ``before``) is read from memory once, and the sums are still in the cache when they are
#: compared (measured on S4's W1, best of 8 in one process: 11.1 ms at 256 Ki elements,
#: 10.8 at 512 Ki, 12.6 at 128 Ki, one row a block, where the shared row was read twice)
BLOCK = 256 * 1024
#: elements of a row that may differ from the reproduction and be compared one by one (or
#: 1/128 of the row when that is more); a row with more goes to the ratios of every element
#: (a wrong rate differs everywhere): past it they cost more (measured on S4's W1: 2.6 ns an
#: element for the ratios of whole rows, 70 to 120 for an element compared alone)
MOST_UNEQUAL = 32
#: unequal elements of a block's row found one by one before they are counted and listed
FEW = 8
#: elements of a wide row flagged together: a segment holding an unequal element is searched
#: alone, not the whole row (S4's W1 has 80 rows of 128,000 with one to four such elements)
SEGMENT = 4096
#: rows looked at before giving up on a parameter most of whose rows are not reproduced
#: (a wrong rate, another rule): the reproduction then costs those rows only
PROBE_ROWS = 8


def reproducible(dt: np.dtype, before: np.ndarray, after: np.ndarray, grad: np.ndarray, eps: float) -> bool:
    """Whether an update reproduced in ``dt`` proves anything at the check's ``eps``: the
    recorded values are in ``dt`` (a sum in another precision would rarely be equal) and
    ``dt`` rounds at least as finely as the run (``finfo(dt).eps <= eps``: the argument
    above needs ``eps >= 2 u``); a float32 trace checked at float64 precision is not."""
    dt = np.dtype(dt)
    return (dt.kind == "f" and before.dtype == dt and after.dtype == dt and grad.dtype.kind == "f"
            and grad.dtype.itemsize <= dt.itemsize and float(np.finfo(dt).eps) <= eps and _subnormals_kept(dt))


def _subnormals_kept(dt: np.dtype) -> bool:
    """Whether this thread computes with subnormal numbers in ``dt`` (a library may have set
    the processor to flush them to zero, e.g. ``torch.set_flush_denormal(True)``): then two
    different subnormals would compare equal and their difference be 0."""
    tiny = np.array([np.finfo(dt).smallest_subnormal * 3], dtype=dt)
    return bool(np.subtract(tiny, tiny / 3)[0] != 0)


def reproduced_rows(before: np.ndarray, after: np.ndarray, grad: np.ndarray,
                    minus_lr: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(rows reproduced, rows of the unequal elements, their columns)``: a row is reproduced
    when ``before + grad * minus_lr`` (``minus_lr``: ``(R, 1)`` in the precision of
    ``before``) equals ``after`` at every element but at most :data:`MOST_UNEQUAL` (or 1/128
    of the row), which are listed (the caller compares them); an element equal and finite
    is ``after - sum == 0`` exactly (an inf or NaN gives inf or NaN there). Rows not
    reproduced list nothing."""
    R, N = before.shape
    k, w = max(1, BLOCK // max(1, N)), min(N, BLOCK)
    ok = np.ones(R, dtype=bool)
    found: dict[int, list] = {}
    most = max(MOST_UNEQUAL, N // 128)
    failed, counts = 0, {}          # rows of ok turned False (each once); unequal elements listed a row
    with np.errstate(all="ignore"), Scratch(before.dtype) as scratch, Scratch(np.bool_) as flags:
        buf = scratch.views((1, min(k, R) * w), 1)[0][0]    # a block's elements, viewed in each block's shape
        nz = flags.views((1, w), 1)[0][0]                   # (taken once: ~8 us a call, S4 ~900 calls)
        for r0 in range(0, R, k):
            r1 = min(R, r0 + k)
            if r0 >= PROBE_ROWS and 2 * failed > r0:     # mostly not reproduced: give up
                ok[r0:] = False
                break
            for c0 in range(0, N, w):
                if not (ok[r0] if r1 - r0 == 1 else ok[r0:r1].any()):
                    break
                c1 = min(N, c0 + w)
                d = buf[:(r1 - r0) * (c1 - c0)].reshape(r1 - r0, c1 - c0)
                np.multiply(grad[r0:r1, c0:c1], minus_lr[r0:r1], out=d, casting="unsafe")
                np.add(d, before[r0:r1, c0:c1], out=d)
                np.subtract(after[r0:r1, c0:c1], d, out=d)
                for i, c, part in _odd_parts(d):
                    r = r0 + i
                    if ok[r]:
                        hits = _nonzero(part, nz, most - counts.get(r, 0))
                        if hits is None:
                            ok[r] = False
                            failed += 1
                        else:
                            found.setdefault(r, []).append(hits + c0 + c)
                            counts[r] = counts.get(r, 0) + hits.size
    listed = [(r, np.concatenate(h)) for r, h in found.items() if ok[r]]
    rows = [np.full(c.size, r, dtype=np.int64) for r, c in listed]
    cat = (lambda xs: np.concatenate(xs) if xs else np.zeros(0, np.int64))
    return ok, cat(rows), cat([c for _, c in listed])


def _odd_parts(d: np.ndarray) -> list[tuple[int, int, np.ndarray]]:
    """``(row, first column, part)`` of the block ``d`` holding a nonzero element, by row and
    column: its rows when they are short (one pass per row), else segments of
    :data:`SEGMENT` elements of each row, flagged in that same pass, so that a wide row with
    one unequal element is searched in one segment, not in full.

    A part is flagged by the largest of its elements' bit patterns (``d`` viewed as unsigned
    integers of its width): 0 exactly when every bit of every element is 0, i.e. every
    element is +0.0; a NaN, an inf or any other number has a bit set. ``-0.0`` (a sign bit) is
    flagged too, and its search (:func:`_nonzero`, ``!= 0``) finds nothing in it: the same
    elements are listed as by a test of ``!= 0``. Why: an unsigned maximum is half the cost of
    ``any`` on floats (S4's W1 row of 128,000 float32: 7.7 against 15.5 us)."""
    bits = _bits(d)
    if d.shape[1] < 2 * SEGMENT:
        return [(i, 0, d[i]) for i in bits.max(axis=1).nonzero()[0].tolist()]
    full = d.shape[1] - d.shape[1] % SEGMENT
    rows, segs = bits[:, :full].reshape(d.shape[0], -1, SEGMENT).max(axis=2).nonzero()
    parts = [(i, c, d[i, c:c + SEGMENT]) for i, c in zip(rows.tolist(), (segs * SEGMENT).tolist())]
    if full < d.shape[1]:
        parts += [(i, full, d[i, full:]) for i in bits[:, full:].max(axis=1).nonzero()[0].tolist()]
        parts.sort(key=lambda p: (p[0], p[1]))
    return parts


def _bits(d: np.ndarray) -> np.ndarray:
    """``d`` (contiguous rows) viewed as unsigned integers of its width; a float whose width
    has none (an extended long double) as booleans of ``d != 0``, the test it stands for."""
    kind = _UNSIGNED.get(d.dtype.itemsize)
    return d.view(kind) if kind is not None else np.not_equal(d, 0)


_UNSIGNED = {2: np.uint16, 4: np.uint32, 8: np.uint64}


def _nonzero(part: np.ndarray, flags: np.ndarray, most: int) -> np.ndarray | None:
    """The positions of the nonzero (or NaN) elements of ``part``, or None when there are more
    than ``most``. Usually one or two: each search for the next stops at it (``argmax`` of a
    boolean row), so the part is scanned once; past :data:`FEW` they are counted and listed
    in two vectorised passes instead. ``flags``: a boolean buffer of at least ``part.size``."""
    nz = flags[:part.size]
    np.not_equal(part, 0, out=nz)
    hits, pos = [], 0
    while pos < nz.size and len(hits) <= FEW:
        j = pos + int(nz[pos:].argmax())
        if not nz[j]:
            break
        hits.append(j)
        pos = j + 1
    if len(hits) <= FEW:
        return np.asarray(hits, dtype=np.int64) if len(hits) <= most else None
    return np.flatnonzero(nz) if np.count_nonzero(nz) <= most else None
