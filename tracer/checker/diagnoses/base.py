"""The tiny base every diagnosis stands on (one diagnosis per module, as Cockpit's quantities).

A diagnosis reads a :class:`Context` (the trace, its arrays and, when the checker
resolved one, the step program) and returns findings: plain dicts with ``kind``,
``param``, ``step``, ``message`` (what happened, with the evidence: numbers and
factors), ``fix`` (one line saying what to change) and ``failed``. The context
computes shared things once (the steps table, an evaluation of the first steps).
"""
from __future__ import annotations

from dataclasses import replace
from functools import cached_property
from typing import TYPE_CHECKING, Any

import numpy as np

from ..compare import all_nan_rows, nonfinite_rows

if TYPE_CHECKING:
    from collections.abc import Callable

    from ...program import Evaluation

__all__ = ["Context", "Diagnosis", "finding", "nonfinite_rows", "all_nan_rows", "any_in_blocks"]


def finding(kind: str, message: str, fix: str, *, param: str | None = None, step: int | None = None,
            failed: bool = True, **evidence: Any) -> dict:
    """A finding dict (see the module docstring)."""
    return {"kind": kind, "param": param, "step": None if step is None else int(step), "message": message,
            "fix": fix, "failed": failed, "evidence": evidence}


#: elements per block when a diagnosis scans a parameter's rows (cache-sized, no whole-trace temporary)
SCAN_BLOCK = 1 << 16


def any_in_blocks(test: Callable, *arrays: np.ndarray, rows: np.ndarray | None = None) -> bool:
    """Whether ``test(*blocks)`` (an elementwise boolean) holds anywhere in the rows of
    ``arrays`` (all of them, or ``rows``), a block of rows at a time, stopping at the first hit."""
    n = arrays[0].shape[0] if rows is None else rows.size
    per = max(1, SCAN_BLOCK // max(1, int(np.prod(arrays[0].shape[1:]))))
    for i in range(0, n, per):
        sel = slice(i, i + per) if rows is None else rows[i:i + per]
        with np.errstate(all="ignore"):
            if np.any(test(*(a[sel] for a in arrays))):
                return True
    return False


class Context:
    """What the diagnoses read: the trace, its arrays and steps, the program (may be None)."""

    def __init__(self, trace, program=None, extras=None):
        self.trace = trace
        self.extras = extras or {}
        self.meta = trace.meta
        self.arrays = trace.arrays()
        self.program = program

    @cached_property
    def steps(self) -> np.ndarray:
        """The recorded step numbers."""
        return np.asarray(self.arrays.steps.get("step", []), dtype=np.int64)

    @cached_property
    def first_step(self) -> int | None:
        return int(self.steps[0]) if self.steps.size else None

    @cached_property
    def evaluation(self) -> Evaluation | None:
        """The program evaluated on the first recorded steps (up to 8), with its gradients, or None."""
        return self._evaluate(8, True)

    @cached_property
    def first_values(self) -> Evaluation | None:
        """The program's values on the first recorded step only, no gradients (or None): what a
        diagnosis reading shapes needs, at a small part of :attr:`evaluation`'s cost."""
        if "evaluation" in self.__dict__:
            return self.evaluation
        return self._evaluate(1, False)

    @cached_property
    def shape_probe(self) -> Evaluation | None:
        """The program's values on the first step's first 2 rows (or :attr:`first_values` when
        that is already computed, or the probe fails): for a diagnosis asking only whether some
        shape pattern occurs. Why 2 rows: a batch dimension of 2 is > 1 exactly where one of 50
        is, so which dimensions broadcast is the same; the full step's float64 forward pass cost
        S4's check ~1 ms (two 50x500x256 products), the probe a small part of it."""
        if "evaluation" in self.__dict__ or "first_values" in self.__dict__:
            return self.first_values
        return self._evaluate(1, False, rows=2) or self.first_values

    def _evaluate(self, count, gradients, rows=None):
        if self.program is None or not self.program.has_loss:
            return None
        from ...errors import SteptraceError
        from ...program import Evaluation
        from ..feed import leaves, step_groups
        try:
            groups = [g for g in step_groups(self.arrays, needs_rows=bool(self.program.inputs))
                      if (g.param_pos >= 0).any()]
            if not groups:
                return None
            g = min(groups, key=lambda g: g.steps[0])
            g = g.subset(g.param_pos >= 0)
            sub = g.subset(slice(0, count))
            if rows is not None and sub.rows is not None and sub.rows.shape[1] > rows:
                sub = replace(sub, rows=sub.rows[:, :rows])
            ev = Evaluation(self.program, leaves(self.program, self.arrays, sub, np.float64), np.float64)
            if gradients:
                ev.gradients()
            ev.steps = sub.steps
            return ev
        except (SteptraceError, ValueError, IndexError, FloatingPointError):
            return None


class Diagnosis:
    """Base class: ``kind`` names the finding; :meth:`run` returns findings for a context."""

    kind = ""

    def run(self, ctx: Context) -> list[dict]:
        raise NotImplementedError
