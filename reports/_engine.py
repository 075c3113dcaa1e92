"""The checker's program and engine, evaluated over every recorded step for the reports.

Why here: the workbook's expected cell values, the page's per-row gradient terms and
update values, and the plots' fitted lines must be the numbers the checker computed,
from the program the checker used (declared, converted from a 0.1.0 dense stack, or
with the loss and learning rate it identified). :func:`tracer.checker.recompute.evaluate_step`
evaluates one step per call and re-groups the samples each time, which is quadratic
over a 10,000-step run; :func:`evaluate_steps` evaluates each batch-size group of steps
in one call of the same engine (:class:`tracer.program.Evaluation`), in memory-bounded
chunks, as the checker does.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from tracer.checker.feed import StepGroup, chunks, leaves, step_groups
from tracer.program import Evaluation

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    from tracer.checker.report import CheckReport
    from tracer.program import StepProgram
    from tracer.trace import Trace

__all__ = ["run_check", "StepEvaluation", "evaluate_steps"]

#: working memory per chunk of evaluated steps (values and gradients of every node)
CHUNK_BYTES = 128 * 1024**2


def run_check(trace: Trace) -> tuple[CheckReport | None, str | None]:
    """``(report, None)`` from :func:`tracer.check`, or ``(None, "why")`` when it cannot run."""
    try:
        from tracer.checker import check
        return check(trace), None
    except Exception as exc:   # reports still show what was recorded
        return None, f"{type(exc).__name__}: {exc}"


@dataclass
class StepEvaluation:
    """One chunk of steps evaluated at once: ``group`` (steps, rows, parameter positions),
    the engine's :class:`Evaluation` and, when asked for, its gradients by name."""

    group: StepGroup
    ev: Evaluation
    grads: dict


def _bytes_per_step(arrays, program) -> int:
    rows = 1
    if arrays.inputs is not None and arrays.sample_step.size:
        rows = int(np.bincount(np.unique(arrays.sample_step, return_inverse=True)[1]).max())
        rows *= max(1, arrays.inputs.shape[1] + arrays.targets.shape[1])
    params = sum(p.before.shape[1] for p in arrays.params.values())
    return 8 * (4 * params + 4 * max(1, len(program.primitive_nodes)) * rows)


def evaluate_steps(trace: Trace, program: StepProgram, wrt: Iterable[str] | None = None, which: str = "before",
                   outputs: Sequence[str] | None = None) -> list[StepEvaluation]:
    """The program on every recorded step with parameters (grouped by batch size).

    ``wrt``: names (params or nodes) whose gradient of the loss is wanted (None: none).
    ``which``: the parameters ``before`` or ``after`` each step's update.
    Raises :class:`tracer.errors.SteptraceError` when the program cannot be evaluated.
    """
    arrays = trace.arrays()
    groups = step_groups(arrays, needs_rows=bool(program.inputs))
    out = []
    for sub in chunks(groups, _bytes_per_step(arrays, program), CHUNK_BYTES):
        ev = Evaluation(program, leaves(program, arrays, sub, np.float64, which), np.float64, outputs=outputs)
        grads = ev.gradients(list(wrt)) if wrt else {}
        out.append(StepEvaluation(sub, ev, grads))
    return out
