"""Checking runs that accumulate gradients: several backward passes per optimizer step.

Each micro-batch is evaluated as its own entry (the program's loss of that micro-batch,
as the user backpropagated it), then the entries are summed per step: the step's loss
is the sum of its micro-batch losses and its gradient the sum of their gradients,
exactly what ``.grad`` holds when ``optimizer.step()`` runs. Predictions are compared
per micro-batch. Sums need every micro-batch of a step, which may sit in different
batch-size groups, so the sums are kept per step until all groups are done; rounding
magnitudes are summed alongside (an accumulated run checks with them directly).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ..errors import SteptraceError
from ..program import Evaluation
from .compare import badness
from .feed import chunks, leaves
from .quantities import ChunkResult, Mags, _predictions, add_worst
from .tolerance import FACTOR

if TYPE_CHECKING:
    from ..arrays import TraceArrays
    from ..program import StepProgram
    from .feed import StepGroup
    from .report import CheckReport, TableBuilder

__all__ = ["check_accumulated"]


def check_accumulated(program: StepProgram, arrays: TraceArrays, groups: list[StepGroup],
                      dtype: type[np.floating], eps: float, builder: TableBuilder,
                      recorded_loss: dict[int, float], report: CheckReport,
                      budget: int) -> tuple[dict[int, float], dict[str, np.ndarray], dict[str, int]]:
    """Evaluate every micro-batch, sum per step, compare; returns recomputed losses, gradients
    (``n_param_steps x size``, for the update check) and checked counts."""
    n = arrays.param_step.size
    step_pos = {int(s): i for i, s in enumerate(arrays.param_step)}
    loss, loss_mag = np.zeros(n), np.zeros(n)
    seen = np.zeros(n, dtype=bool)
    grads = {k: np.zeros(p.grad.shape) for k, p in arrays.params.items()}
    gmags = {k: np.zeros(p.grad.shape) for k, p in arrays.params.items()}
    rtol = FACTOR * eps
    checked = {}
    per_step = 8 * (6 * sum(p.before.shape[1] for p in arrays.params.values()) + 1024)
    for sub in chunks(groups, per_step, budget):
        try:
            ev = Evaluation(program, leaves(program, arrays, sub, dtype), dtype)
        except SteptraceError as exc:
            report.cannot_check.append(f"model: {exc}")
            return {}, {}, checked
        res = ChunkResult(sub.steps)
        _predictions(program, arrays, sub, ev, Mags(ev), builder, rtol, res)
        checked["prediction"] = checked.get("prediction", 0) + res.checked.get("prediction", 0)
        pos = np.array([step_pos[int(s)] for s in sub.steps])
        np.add.at(loss, pos, ev.loss.astype(np.float64))
        np.add.at(loss_mag, pos, ev.magnitudes()[program.outputs["loss"]].astype(np.float64))
        seen[pos] = True
        gm = ev.gradient_magnitudes()
        for name, g in ev.gradients().items():
            np.add.at(grads[name], pos, g.reshape(len(pos), -1).astype(np.float64))
            np.add.at(gmags[name], pos, gm[name].reshape(len(pos), -1).astype(np.float64))
        del ev, gm           # before the next chunk's evaluation, whose arrays then reuse their memory
    steps = arrays.param_step[seen]
    actual = np.array([recorded_loss.get(int(s), np.nan) for s in steps])
    has = np.isfinite(actual)
    if has.any():
        builder.add(step=steps[has], quantity="loss", expected=loss[seen][has], actual=actual[has],
                    scale=loss_mag[seen][has], rtol=rtol, atol=0.0)
        checked["loss"] = int(has.sum())
    for name, p in arrays.params.items():
        rec = p.grad[seen]
        ok = ~np.isnan(rec).all(axis=1)
        if ok.any():
            e, a, m = grads[name][seen][ok], rec[ok].astype(np.float64), gmags[name][seen][ok]
            add_worst(builder, "grad", name, steps[ok], e, a, m, rtol, bad=badness(e, a, rtol, m))
            checked["grad:" + name] = int(ok.sum())
    losses = dict(zip(steps.tolist(), loss[seen].tolist()))
    missing = {k: np.where(seen[:, None], g, np.nan) for k, g in grads.items()
               if np.isnan(arrays.params[k].grad).all(axis=1).any()}
    return losses, missing, checked
