"""Evaluate a trace's step program at chosen steps: what explanations and reports show.

The checker walks every step; ``explain``, the metric reconciliation, the workbook and
the page need the same numbers for one step, or for the whole data set with the
parameters before or after a step. They come here, so every number a person sees
is computed by the one engine from the one program the checker used.
"""
from __future__ import annotations

import numpy as np

from ..errors import TraceInputError
from ..program import Evaluation
from .feed import StepGroup, leaves, step_groups
from .resolve import resolve_program

__all__ = ["program_of", "evaluate_step", "evaluate_full_data", "batch_losses"]


def program_of(trace, report=None):
    """The program the checker uses for ``trace`` (from a report when given), or None."""
    if report is not None and report.context.get("program") is not None:
        return report.context["program"]
    return resolve_program(trace).program


def _dtype(trace):
    """Numbers shown to people are computed in float64 (the checker's tolerances are separate)."""
    return np.float64


def evaluate_step(trace, step: int, program=None, which: str = "before") -> Evaluation:
    """The program evaluated on step ``step``'s batch with the parameters ``which`` (before/after)."""
    program = program or program_of(trace)
    if program is None:
        raise TraceInputError("this trace has no program the checker can evaluate")
    arrays = trace.arrays()
    for g in step_groups(arrays, needs_rows=bool(program.inputs)):
        hit = np.flatnonzero(g.steps == step)
        if hit.size and g.param_pos[hit[0]] >= 0:
            sub = g.subset(hit[:1])
            return Evaluation(program, leaves(program, arrays, sub, _dtype(trace), which), _dtype(trace))
    raise TraceInputError(f"step {step}: its batch rows or parameters were not recorded")


def evaluate_full_data(trace, step: int, which: str, program=None) -> Evaluation:
    """The program on every data row at once, with the parameters ``which`` of step ``step``."""
    program = program or program_of(trace)
    if program is None:
        raise TraceInputError("this trace has no program the checker can evaluate")
    arrays = trace.arrays()
    pos = np.flatnonzero(arrays.param_step == step)
    if not pos.size:
        raise TraceInputError(f"step {step}: the parameters of this step were not recorded")
    rows = None if arrays.inputs is None else np.arange(arrays.inputs.shape[0])[None]
    sub = StepGroup(np.array([step]), rows, pos[:1])
    return Evaluation(program, leaves(program, arrays, sub, _dtype(trace), which), _dtype(trace))


def batch_losses(trace, steps, program=None, magnitudes: bool = False) -> dict:
    """``{step: loss}`` recomputed by the program for ``steps`` (those that can be);
    with ``magnitudes`` the loss's rounding magnitude instead (for tolerances)."""
    program = program or program_of(trace)
    if program is None or not program.has_loss:
        return {}
    arrays = trace.arrays()
    wanted = set(int(s) for s in steps)
    out = {}
    for g in step_groups(arrays, needs_rows=bool(program.inputs)):
        sel = np.array([int(s) in wanted for s in g.steps]) & (g.param_pos >= 0)
        if not sel.any():
            continue
        sub = g.subset(sel)
        ev = Evaluation(program, leaves(program, arrays, sub, _dtype(trace)), _dtype(trace), outputs=("loss",))
        values = ev.magnitudes()[program.outputs["loss"]] if magnitudes else ev.loss
        for s, v in zip(sub.steps.tolist(), np.asarray(values, dtype=np.float64).tolist()):
            out[s] = out.get(s, 0.0) + v          # micro-batches of one step add up
    return out
