"""The loss plot: *why does the number Keras prints differ from mine?*

The batch loss per iteration, the running value the framework logged (its line broken at
each epoch, where it resets), and the loss of all data rows with the weights after each
update. With an RMSE, MSE or MAE logged, one more panel per metric shows the same three
versions of it: the picture that explains scenario S2. The full-data values come from
the engine (:func:`tracer.checker.recompute.full_data_series`) evaluating the checker's
program, so identified losses and any program are drawn the same way.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from tracer.errors import SteptraceError, TraceInputError

from ._plot_common import broken, epoch_marks, iteration_axis, legend_outside, marker_for, plt, save
from ._safe import plain_label

if TYPE_CHECKING:
    import os
    from collections.abc import Sequence
    from pathlib import Path

    from matplotlib.figure import Figure

    from tracer.checker.recompute import FullData
    from tracer.checker.report import CheckReport
    from tracer.program import StepProgram
    from tracer.trace import Trace

__all__ = ["plot_loss", "engine_full_data"]

_KINDS = ("rmse", "mse", "mae")
_LABEL = {"rmse": "RMSE", "mse": "MSE", "mae": "MAE"}


def engine_full_data(trace: Trace,
                     report: CheckReport | None = None) -> tuple[StepProgram | None, FullData | None]:
    """``(program, FullData after each update)`` from the checker's program, or ``(None, None)``."""
    from tracer.checker.recompute import full_data_series

    from ._engine import run_check
    if report is None:
        report, _ = run_check(trace)
    program = report.context.get("program") if report is not None else None
    if program is None or trace.arrays().inputs is None:
        return program, None
    try:
        return program, full_data_series(trace, "after", program)
    except (SteptraceError, ValueError, IndexError):
        return program, None


def _aligned(trace, steps, values):
    """``values`` (one per step of ``steps``) in the order of ``trace.steps`` (NaN: missing)."""
    out = np.full(trace.n_steps, np.nan)
    pos = {int(s): i for i, s in enumerate(trace.steps["step"].to_numpy())}
    for s, v in zip(np.asarray(steps).tolist(), np.asarray(values, dtype=np.float64).tolist()):
        if int(s) in pos:
            out[pos[int(s)]] = v
    return out


def _metrics(trace) -> list[tuple[str, dict]]:
    """``(column, spec)`` of each logged RMSE/MSE/MAE."""
    from tracer.metric_names import KIND_OF_NAME
    out = []
    specs = {m.get("name"): m for m in trace.meta.get("metrics") or []}
    for col in trace.steps.columns:
        name = col[len("logged_"):] if col.startswith("logged_") else None
        if not name or name == "loss":
            continue
        spec = specs.get(name) or {}
        kind = spec.get("kind") if spec.get("kind") in _KINDS else KIND_OF_NAME.get(name.lower())
        if kind in _KINDS:
            out.append((col, {"name": name, "kind": kind}))
    return out


def _metric_values(trace, spec, fd):
    """``(batch value, full data after)`` per iteration of the metric ``spec``."""
    from tracer.checker.logged import metric_series
    from tracer.math.metrics import get_metric
    s = metric_series(trace, spec)
    batch = None if s is None else _aligned(trace, s.steps, s.batch_value)
    full = None
    if fd is not None and fd.prediction is not None:
        yt = np.asarray(trace.arrays().targets, dtype=np.float64)
        yt = np.broadcast_to(yt[None], fd.prediction.shape[:2] + (yt.shape[1],))
        total, count = get_metric(spec).batch_terms(fd.prediction, yt)
        full = _aligned(trace, fd.steps, get_metric(spec).result(total, count))
    return batch, full


def _panel(ax, trace, it, batch, logged, full, what, unit):
    """One panel: the batch's value, the logged running value (broken at epochs), all rows after."""
    n, ep = len(it), trace.steps["epoch"].to_numpy()
    if batch is not None:
        ax.plot(it, batch, marker=marker_for(n), ms=4, lw=1.4, color="C0",
                label=f"{what} of this batch (weights before the update)")
    if logged is not None:
        bx, by = broken(it, logged, ep)
        ax.plot(bx, by, marker=marker_for(n, "s"), ms=4, lw=1.2, color="C1", ls="--",
                label=f"{what} logged by the framework (running over the epoch so far; resets each epoch)")
    if full is not None and np.isfinite(full).any():
        ax.plot(it, full, marker=marker_for(n, "^"), ms=4, lw=1.2, color="C2",
                label=f"{what} on all data rows (weights after the update)")
    ax.set_ylabel(plain_label(unit))
    epoch_marks(ax, trace)
    legend_outside(ax)
    ax.grid(alpha=0.3)


def plot_loss(trace: Trace, path: str | os.PathLike | None = None, formats: Sequence[str] = ("png", "svg"),
              report: CheckReport | None = None) -> Figure | list[Path]:
    """Loss per iteration (and logged metrics); returns the figure, or the paths if ``path``."""
    if trace.n_steps == 0 or "loss" not in trace.steps.columns:
        raise TraceInputError("trace: no recorded steps to plot")
    pyplot = plt()
    steps = trace.steps
    it = steps["step"].to_numpy()
    metrics = _metrics(trace)
    fig, axes = pyplot.subplots(1 + len(metrics), 1, figsize=(13, 3.6 * (1 + len(metrics))), sharex=True,
                                squeeze=False)
    axes = axes[:, 0]
    program, fd = engine_full_data(trace, report)
    full = None if fd is None or fd.loss is None else _aligned(trace, fd.steps, fd.loss)
    logged = steps["logged_loss"].to_numpy(float) if "logged_loss" in steps.columns else None
    loss_name = (trace.meta.get("loss") or {}).get("name", "as recorded")
    _panel(axes[0], trace, it, steps["loss"].to_numpy(float), logged, full, "loss", f"loss ({loss_name})")
    axes[0].set_title("Loss per iteration", pad=14)
    values = steps["loss"].to_numpy(float)
    values = np.abs(values[np.isfinite(values)])
    if values.size and values.min() > 0 and values.max() / values.min() > 1e3:
        axes[0].set_yscale("log")
    for ax, (col, spec) in zip(axes[1:], metrics):
        batch, full_m = _metric_values(trace, spec, fd)
        lab = _LABEL[spec["kind"]]
        _panel(ax, trace, it, batch, steps[col].to_numpy(float), full_m, lab, f"{lab} ({spec['name']})")
        ax.set_title(f"{lab}: what was logged vs what the batch and the updated model give", pad=14)
    axes[-1].set_xlabel("iteration (optimizer step)")
    iteration_axis(axes[-1], it)
    fig.tight_layout()
    return save(fig, path, formats) if path is not None else fig
