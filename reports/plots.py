"""Plots of a trace (matplotlib, PNG and SVG; the fitted line also as an animated GIF).

Why these pictures: each answers a question a learner asks of a run.

- :func:`plot_loss` (:mod:`reports._plot_loss`) - *why does the number Keras prints differ
  from mine?* The batch loss per iteration, the running value the framework logged (its
  line broken at each epoch, where it resets), and the loss of all data rows after each
  update; one more panel per logged RMSE/MSE/MAE - the picture that explains S2.
- :func:`plot_params` - where each parameter went, iteration by iteration.
- :func:`plot_fits` / :func:`animate_fits` (:mod:`reports._plot_fits`) - for one-feature
  models, the fitted line at each iteration over the data, the batch's rows highlighted.
- :func:`plot_gradients` - gradient norm and update size per parameter (log scale).

Every plot labels its epochs, keeps integer iteration ticks from one iteration to 10,000,
and puts its legend beside the data (:mod:`reports._plot_common`). :func:`save_all`
writes all that apply and returns the paths.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from tracer.errors import TraceInputError

from ._plot_common import epoch_marks, iteration_axis, legend_outside, marker_for, plt, save
from ._plot_fits import MAX_FRAMES, MAX_PANELS, animate_fits, one_feature, plot_fits
from ._plot_loss import plot_loss
from ._safe import plain_label

if TYPE_CHECKING:
    import os
    from collections.abc import Callable, Sequence

    from matplotlib.figure import Figure

    from tracer.trace import Trace

__all__ = ["plot_loss", "plot_params", "plot_gradients", "plot_fits", "animate_fits", "one_feature", "save_all",
           "MAX_PANELS", "MAX_FRAMES", "MAX_ELEMENTS_PER_PARAM"]

#: most parameter elements drawn per parameter in :func:`plot_params`
MAX_ELEMENTS_PER_PARAM = 8


def plot_params(trace: Trace, path: str | os.PathLike | None = None,
                formats: Sequence[str] = ("png", "svg")) -> Figure | list[Path]:
    """Each parameter's path: its value before the first step, then after each update."""
    names = trace.param_names
    if not names:
        raise TraceInputError("trace: no parameter values were recorded (summary capture?)")
    fig, axes = plt().subplots(len(names), 1, figsize=(12, 3.0 * len(names)), sharex=True, squeeze=False)
    it = trace.arrays().param_step
    for ax, name in zip(axes[:, 0], names):
        before = trace.param_values(name, "before").reshape(len(it), -1)
        after = trace.param_values(name, "after").reshape(len(it), -1)
        x = np.concatenate([[it[0] - 1], it]) if len(it) else it
        for e in range(min(before.shape[1], MAX_ELEMENTS_PER_PARAM)):
            y = np.concatenate([[before[0, e]], after[:, e]])
            lab = plain_label(name if before.shape[1] == 1 else f"{name}[{e}]")
            ax.plot(x, y, marker=marker_for(len(it)), ms=3, label=lab)
        more = before.shape[1] - MAX_ELEMENTS_PER_PARAM
        title = plain_label(f"{name} {list(trace.param_shape(name))}")
        if more > 0:
            title += f" (first {MAX_ELEMENTS_PER_PARAM} elements of {before.shape[1]})"
        ax.set_title(title, pad=14)
        ax.set_ylabel("value")
        ax.grid(alpha=0.3)
        epoch_marks(ax, trace, offset=1.0)
        legend_outside(ax)
    axes[-1, 0].set_xlabel("iteration (0 = initial value, k = after update k)")
    iteration_axis(axes[-1, 0], np.r_[it[:1] - 1, it] if len(it) else it)
    fig.tight_layout()
    return save(fig, path, formats) if path is not None else fig


def plot_gradients(trace: Trace, path: str | os.PathLike | None = None,
                   formats: Sequence[str] = ("png", "svg")) -> Figure | list[Path]:
    """Gradient norm and update size (L2 norm of after - before) per parameter, log scale."""
    names = trace.param_names
    if not names:
        raise TraceInputError("trace: no parameter values were recorded (summary capture?)")
    it = trace.arrays().param_step
    fig, axes = plt().subplots(2, 1, figsize=(12, 6.5), sharex=True)
    for i, name in enumerate(names):
        g = trace.param_values(name, "grad").reshape(len(it), -1)
        u = trace.param_values(name, "update").reshape(len(it), -1)
        if np.isfinite(g).any():
            axes[0].plot(it, np.linalg.norm(g, axis=1), color=f"C{i}", marker=marker_for(len(it)), ms=3,
                         label=plain_label(name))
        axes[1].plot(it, np.linalg.norm(u, axis=1), color=f"C{i}", marker=marker_for(len(it)), ms=3,
                     label=plain_label(name))
    for ax, title in zip(axes, ["gradient norm ||dL/dp||", "update size ||p_after - p_before||"]):
        ax.set_yscale("log")
        ax.set_ylabel("gradient norm" if ax is axes[0] else "update size")
        ax.set_title(title + " per iteration", pad=14)
        ax.grid(alpha=0.3, which="both")
        epoch_marks(ax, trace)
        legend_outside(ax)
    axes[1].set_xlabel("iteration (optimizer step)")
    iteration_axis(axes[1], it)
    fig.tight_layout()
    return save(fig, path, formats) if path is not None else fig


def save_all(trace: Trace, directory: str | os.PathLike, formats: Sequence[str] = ("png", "svg"),
             progress: Callable[[int, int, str], object] | None = None) -> list[Path]:
    """Write every plot that applies to ``trace`` into ``directory``; returns the paths."""
    if trace.n_steps == 0 or "loss" not in trace.steps.columns:
        raise TraceInputError("trace: no recorded steps to plot")
    directory = Path(directory)
    out = []
    jobs = [("loss", plot_loss)]
    if trace.param_names:
        jobs += [("params", plot_params), ("gradients", plot_gradients)]
    if one_feature(trace):
        jobs += [("fits", plot_fits)]
    for name, fn in jobs:
        out += fn(trace, directory / name, formats=formats)
        if progress:
            progress(1, 0, f"plot {name}")
    if one_feature(trace):
        out.append(animate_fits(trace, directory / "fits"))
        if progress:
            progress(1, 0, "animation")
    return out
