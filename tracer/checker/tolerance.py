"""How close a recorded number must be to its recomputation: rounding of the run's precision.

A framework computing in precision ``eps`` (float32: 1.2e-7) is off from the exact
value by about ``eps * M``, where ``M`` is the value's rounding magnitude walked
through the step program (:meth:`tracer.program.Evaluation.magnitudes`): for a sum it
is the sum of the absolute terms, so cancellation near convergence widens the
tolerance exactly where the run's own rounding is large, while a wrong factor, sign
or learning rate (errors of order ``|value|``) still fails. The recomputation itself
runs in the working precision (float32 for a float32 run) and is off by as much
again, hence the factor :data:`FACTOR` on ``eps * M``; docs/TOLERANCES.md derives it.

Checks run in phases, row (step) by row: a quick one against ``eps * |value|``
(:mod:`tracer.checker.compare`, in blocks, in the run's precision); for the rows it does
not pass, one against a *lower bound* ``L`` of the magnitudes (below); and only for the
rows that still do not pass, the magnitudes themselves (one more pass each way),
computed for those rows only. A row's verdict is the same in every phase (each scale
is at most ``M``, and only widens the tolerance from ``|value|``); the element a passing
row reports as its worst is the worst against the scale that decided that row:
``|value|`` for a row the quick phase passed, ``max(|value|, L/2)`` for one the bound
passed (``L/2`` reported as its ``scale``), ``M`` otherwise (until 0.2 a chunk with any row
needing magnitudes measured all its rows against them, so such a row could name
another element, with a smaller ``rel_err``).

Why the lower bound: a large gradient row (128,000 elements of a 500 x 256 weight)
always holds some deeply cancelled elements, ``|value| << M``, so the quick phase never
passes it, and the exact magnitudes (``|X|^T @ M(dH)``, ``|X| @ |W|``...) cost as much
as the gradients themselves. Every magnitude of the walk is a sum of nonnegative terms,
and every rule of the walk is monotone in its input magnitudes (elementwise rules are
sums and products of absolute values, maxima, and pieces chosen by the values, not by
the magnitudes; reductions, softmax, indexing and shape rules sum or pick nonnegative
terms). So the same walk with each large matrix product summed over every ``s``-th
entry of its contracted index (forward products; gradient products bound runs of ``s``
entries by their smallest term times the other side's sum, :mod:`tracer.program.matmul`)
gives ``L <= M`` element by element, at about ``1/s`` of the cost. ``L`` is used halved
(:data:`LOWER_FACTOR`): both walks run in the working precision, and a float32 sum of
``n`` nonnegative terms is within ``n * eps`` of its exact value in any order, so the
halving keeps ``L <= M`` as computed for any contraction shorter than about 2**20 terms.
A correct element's error is about ``eps * sqrt(n) * term`` while ``L/2`` is ``M/10`` to
``M/100`` (S4's first-layer gradient: ``M/48`` at the median), so the bound settles essentially every row of a correct run; a row it does
not settle gets ``M`` exactly as before. Where the bound would cut nothing (small
programs), it is not computed. Rows of at least
:data:`~tracer.checker.quantities.EAGER_ELEMENTS` elements compute ``L`` first and run
the quick comparison and this one in one streaming pass. docs/TOLERANCES.md has the
argument op by op and the figures.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from ..trace import Trace

__all__ = ["EPS", "FACTOR", "LOWER_FACTOR", "run_precision", "working_dtype"]

#: unit roundoff of each precision a run may compute in
EPS = {"float64": float(np.finfo(np.float64).eps), "float32": float(np.finfo(np.float32).eps),
       "float16": float(np.finfo(np.float16).eps), "bfloat16": 2.0 ** -7}
#: a check passes when |expected - actual| <= FACTOR * eps * M
FACTOR = 32.0
#: the lower bound of the magnitudes is used times this (see the module docstring)
LOWER_FACTOR = 0.5
_ORDER = ("bfloat16", "float16", "float32", "float64")


def run_precision(trace: Trace) -> str:
    """The lowest precision the run's parameters were kept in (``meta.params[].dtype``
    as the hook saw it, else the recorded arrays' dtype)."""
    found = set()
    for p in trace.meta.get("params") or []:
        dt = p.get("dtype") if isinstance(p, dict) else None
        if dt in EPS:
            found.add(dt)
    for p in trace.arrays().params.values():
        found.add({2: "float16", 4: "float32"}.get(p.before.dtype.itemsize, "float64"))
    for name in _ORDER:
        if name in found:
            return name
    return "float64"


def working_dtype(precision: str) -> type[np.floating]:
    """The precision the checker computes in: the run's own, at least float32."""
    return np.float64 if precision == "float64" else np.float32
