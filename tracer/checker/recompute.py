"""Evaluate a trace's step program at chosen steps: what explanations and reports show.

The checker walks every step; ``explain``, the metric reconciliation, the workbook and
the page need the same numbers for one step, or for the whole data set with the
parameters before or after a step. They come here, so every number a person sees
is computed by the one engine from the one program the checker used.
"""
from __future__ import annotations

import numpy as np

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..errors import TraceInputError
from ..program import Evaluation
from .feed import StepGroup, leaves, step_groups
from .resolve import resolve_program

if TYPE_CHECKING:
    from collections.abc import Iterable

    from ..program import StepProgram
    from ..trace import Trace
    from .report import CheckReport

__all__ = ["program_of", "evaluate_step", "evaluate_full_data", "batch_losses", "full_data_series", "FullData",
           "batch_series"]

#: working memory of one chunk of :func:`full_data_series` (rows x steps x program values)
FULL_DATA_BYTES = 64 * 1024**2


def program_of(trace: Trace, report: CheckReport | None = None) -> StepProgram | None:
    """The program the checker uses for ``trace`` (from a report when given), or None."""
    if report is not None and report.context.get("program") is not None:
        return report.context["program"]
    return resolve_program(trace).program


def _dtype(trace):
    """Numbers shown to people are computed in float64 (the checker's tolerances are separate)."""
    return np.float64


def evaluate_step(trace: Trace, step: int, program: StepProgram | None = None,
                  which: str = "before") -> Evaluation:
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


def evaluate_full_data(trace: Trace, step: int, which: str, program: StepProgram | None = None) -> Evaluation:
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


def batch_losses(trace: Trace, steps: Iterable[int], program: StepProgram | None = None,
                 magnitudes: bool = False) -> dict:
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


@dataclass
class FullData:
    """The program on every data row for each step: ``steps`` (S,), ``loss`` (S,) or None,
    ``prediction`` (S, n_rows, outputs) or None (NaN where the program could not run)."""

    steps: np.ndarray
    loss: np.ndarray | None
    prediction: np.ndarray | None


def full_data_series(trace: Trace, which: str = "after", program: StepProgram | None = None,
                     steps: np.ndarray | None = None) -> FullData:
    """The loss and predictions of the whole data set with the parameters ``which``
    (``before``/``after``) each step: what "the model after update k" gives on all rows.

    Why here: the plots, the metric answers and the logged-value diagnosis all ask "what
    would the updated model say on every row?"; the one engine answers it from the one
    program, in memory-bounded chunks of steps (``steps``: a subset, default all recorded).
    """
    program = program or program_of(trace)
    if program is None:
        raise TraceInputError("this trace has no program the checker can evaluate")
    arrays = trace.arrays()
    if arrays.inputs is None or not arrays.params:
        raise TraceInputError("the full data needs the training rows and the parameters of each step")
    pos = np.arange(arrays.param_step.size)
    if steps is not None:
        pos = pos[np.isin(arrays.param_step, np.asarray(steps, dtype=np.int64))]
    n = arrays.inputs.shape[0]
    width = max(1, len(program.primitive_nodes)) * max(1, arrays.inputs.shape[1] + arrays.targets.shape[1])
    per = max(1, FULL_DATA_BYTES // (8 * n * width))
    has_loss, has_pred = program.has_loss, "prediction" in program.outputs
    loss = np.full(pos.size, np.nan) if has_loss else None
    pred = None
    for i0 in range(0, pos.size, per):
        sel = pos[i0:i0 + per]
        group = StepGroup(arrays.param_step[sel], np.broadcast_to(np.arange(n), (sel.size, n)), sel)
        ev = Evaluation(program, leaves(program, arrays, group, np.float64, which), np.float64)
        if has_loss:
            loss[i0:i0 + sel.size] = ev.loss
        if has_pred and ev.prediction is not None:
            p = np.asarray(ev.prediction, dtype=np.float64).reshape(sel.size, n, -1)
            if pred is None:
                pred = np.full((pos.size, n, p.shape[2]), np.nan)
            pred[i0:i0 + sel.size] = p
    return FullData(arrays.param_step[pos].astype(np.int64), loss, pred)


def batch_series(trace: Trace, which: str = "after", program: StepProgram | None = None) -> dict:
    """``{step: (predictions (B, m), loss)}`` of each step's own batch with the parameters
    ``which``: the batch as the updated model sees it (the logged-value catalogue's
    "weights after the update" candidates)."""
    program = program or program_of(trace)
    if program is None:
        return {}
    arrays = trace.arrays()
    out = {}
    for g in step_groups(arrays, needs_rows=bool(program.inputs)):
        g = g.subset(g.param_pos >= 0)
        if not len(g.steps):
            continue
        ev = Evaluation(program, leaves(program, arrays, g, np.float64, which), np.float64)
        loss = ev.loss if program.has_loss else np.full(len(g.steps), np.nan)
        pred = ev.prediction
        for j, s in enumerate(g.steps.tolist()):
            p = None if pred is None else np.asarray(pred[j], dtype=np.float64).reshape(g.rows.shape[1], -1)
            out[int(s)] = (p, float(loss[j]))
    return out
