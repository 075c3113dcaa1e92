"""A rank's trace as its own batch sees it: the gradient column is the rank's local one.

Why: a DDP rank records the gradient its optimizer used, the *reduced* one (the mean of
every rank's local gradient, a global-batch quantity), and, in the ``local_grad``
column, its own gradient before the all-reduce. The step program evaluated on the
rank's own rows gives the local gradient, so the checker compares the program with
``local_grad`` and the update with ``grad``; whether ``grad`` is the mean of the ranks'
local gradients is a cross-rank check (:mod:`tracer.checker.diagnoses.ranks`).
"""
from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..trace import Trace

__all__ = ["LOCAL_GRAD", "local_view", "is_rank_trace"]

LOCAL_GRAD = "local_grad"


def is_rank_trace(trace: Trace) -> bool:
    """Whether ``trace`` is one rank's of a distributed job (not a merged one)."""
    d = trace.meta.get("distributed") or {}
    return isinstance(d, dict) and d.get("rank") is not None and not d.get("merged")


def local_view(trace: Trace) -> Trace:
    """``trace`` itself, or for a rank's trace with local gradients a Trace sharing its
    arrays whose ``grad`` is ``local_grad`` (where a parameter has one)."""
    if not is_rank_trace(trace):
        return trace
    arrays = trace.arrays()
    if not any(LOCAL_GRAD in p.slots for p in arrays.params.values()):
        return trace
    params = {n: (dataclasses.replace(p, grad=p.slots[LOCAL_GRAD]) if LOCAL_GRAD in p.slots else p)
              for n, p in arrays.params.items()}
    view = type(trace)(arrays=dataclasses.replace(arrays, params=params), meta=trace.meta)
    return view
