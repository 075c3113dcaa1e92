"""How close a recorded number must be to its recomputation: rounding of the run's precision.

A framework computing in precision ``eps`` (float32: 1.2e-7) is off from the exact
value by about ``eps * M``, where ``M`` is the value's rounding magnitude walked
through the step program (:meth:`tracer.program.Evaluation.magnitudes`): for a sum it
is the sum of the absolute terms, so cancellation near convergence widens the
tolerance exactly where the run's own rounding is large, while a wrong factor, sign
or learning rate (errors of order ``|value|``) still fails. The recomputation itself
runs in the working precision (float32 for a float32 run) and is off by as much
again, hence the factor :data:`FACTOR` on ``eps * M``; docs/TOLERANCES.md derives it.

Checks run in two phases: a quick one against ``eps * |value|`` that passes almost
everything (:mod:`tracer.checker.compare`), and only where it does not, the
magnitudes (one more pass each way).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from ..trace import Trace

__all__ = ["EPS", "FACTOR", "run_precision", "working_dtype"]

#: unit roundoff of each precision a run may compute in
EPS = {"float64": float(np.finfo(np.float64).eps), "float32": float(np.finfo(np.float32).eps),
       "float16": float(np.finfo(np.float16).eps), "bfloat16": 2.0 ** -7}
#: a check passes when |expected - actual| <= FACTOR * eps * M
FACTOR = 32.0
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
