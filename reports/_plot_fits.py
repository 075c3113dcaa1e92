"""Fitted lines of a one-feature model: the line before and after each update over the data.

Why: for ``y = w x + b`` the learner can *see* an iteration: the batch's rows (highlighted),
the line the batch was predicted with and the line after the update. Small multiples
(:func:`plot_fits`) and an animated GIF (:func:`animate_fits`), dense at the start where
the line moves most. The lines are the step program evaluated by the engine
(:mod:`reports._model`).
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from tracer.atomic import replacing_file
from tracer.errors import TraceFileError, TraceInputError

from ._model import dense_layers, forward, params_at
from ._plot_common import plt as _plt
from ._plot_common import save as _save
from ._safe import plain_label

if TYPE_CHECKING:
    import os
    from collections.abc import Sequence

    from matplotlib.figure import Figure
    from numpy.typing import ArrayLike

    from tracer.trace import Trace

__all__ = ["one_feature", "plot_fits", "animate_fits", "MAX_PANELS", "MAX_FRAMES"]

#: most panels in :func:`plot_fits` and frames in :func:`animate_fits`
MAX_PANELS = 12
MAX_FRAMES = 30


def _per_step_samples(trace):
    """(order-sorted) sample rows, predictions and the slice bounds per step."""
    a = trace.arrays()
    order = np.argsort(a.sample_step, kind="stable")
    step = a.sample_step[order]
    rows = a.sample_row[order]
    pred = None if a.sample_pred is None else a.sample_pred[order]
    ids = trace.steps["step"].to_numpy()
    return rows, pred, np.searchsorted(step, ids, "left"), np.searchsorted(step, ids, "right")


def one_feature(trace: Trace) -> bool:
    """True for a model with one input column and one output: its fit is a line or curve."""
    a = trace.arrays()
    return (a.inputs is not None and a.inputs.shape[1] == 1 and a.targets.shape[1] == 1
            and dense_layers(trace.meta) is not None and len(a.param_step) == trace.n_steps > 0)


def _pick(n, k):
    """k step positions out of n: all when n <= k, else dense at the start (where lines move
    most) and sparse later: geometric spacing from the first to the last iteration."""
    if n <= k:
        return np.arange(n)
    idx = np.unique(np.round(np.geomspace(1, n, k)).astype(int) - 1)
    extra = [i for i in range(n) if i not in set(idx)]
    while len(idx) < k and extra:   # fill gaps left by rounding duplicates
        idx = np.unique(np.append(idx, extra.pop(0)))
    return idx


def _fit_curves(trace):
    a = trace.arrays()
    x = a.inputs[:, 0]
    pad = 0.05 * (x.max() - x.min() or 1.0)
    grid = np.linspace(x.min() - pad, x.max() + pad, 200)
    before = forward(trace.meta, params_at(trace, "before"), grid[:, None])[..., 0]
    after = forward(trace.meta, params_at(trace, "after"), grid[:, None])[..., 0]
    return x, a.targets[:, 0], grid, before, after


def _draw_fit(ax, trace, data, s, rows, lo, hi, small=False):
    x, y, grid, before, after = data
    steps = trace.steps
    ax.scatter(x, y, s=6 if len(x) > 100 else 14, color="0.7", label="data rows")
    batch = rows[lo[s]:hi[s]]
    if 0 < len(batch) < len(x):
        ax.scatter(x[batch], y[batch], s=22, color="C3", zorder=3, label="this batch")
    ax.plot(grid, before[s], color="C0", ls="--", lw=1.2, label="before the update")
    ax.plot(grid, after[s], color="C2", lw=1.6, label="after the update")
    ax.set_title(f"iteration {int(steps['step'].iloc[s])} (epoch {int(steps['epoch'].iloc[s])}, "
                 f"batch {int(steps['batch'].iloc[s])})", fontsize=9 if small else 11)
    ax.tick_params(labelsize=7 if small else 9)


def plot_fits(trace: Trace, path: str | os.PathLike | None = None, formats: Sequence[str] = ("png", "svg"),
              iterations: ArrayLike | None = None) -> Figure | list[Path]:
    """Small multiples: the fitted line before/after chosen iterations over the data."""
    plt = _plt()
    if not one_feature(trace):
        raise TraceInputError("trace: fitted lines need a one-feature, one-output dense model with every step recorded")
    data = _fit_curves(trace)
    rows, _, lo, hi = _per_step_samples(trace)
    idx = _pick(trace.n_steps, MAX_PANELS) if iterations is None else np.asarray(iterations) - 1
    ncol = min(4, len(idx))
    nrow = int(np.ceil(len(idx) / ncol))
    fig, axes = plt.subplots(nrow, ncol, figsize=(3.2 * ncol, 2.8 * nrow + 0.6), sharex=True, sharey=True,
                             squeeze=False)
    for ax in axes.ravel()[len(idx):]:
        ax.axis("off")
    for ax, s in zip(axes.ravel(), idx):
        _draw_fit(ax, trace, data, int(s), rows, lo, hi, small=True)
    for ax in axes[-1]:
        ax.set_xlabel(plain_label(trace.input_columns[0] if trace.input_columns else "x"))
    for ax in axes[:, 0]:
        ax.set_ylabel(plain_label(trace.target_columns[0] if trace.target_columns else "y"))
    handles, labels = axes.ravel()[0].get_legend_handles_labels()
    from tracer.display import count
    fig.suptitle("Fitted line before and after the update, at " +
                 (("the only iteration" if trace.n_steps == 1 else "every iteration") if len(idx) == trace.n_steps
                  else f"{len(idx)} of {count(trace.n_steps, 'iteration')}"))
    fig.legend(handles, labels, loc="lower center", ncol=4, fontsize=9, frameon=False,
               bbox_to_anchor=(0.5, 0.0))
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    return _save(fig, path, formats) if path is not None else fig


def animate_fits(trace: Trace, path: str | os.PathLike, fps: int = 4) -> Path:
    """An animated GIF of the fitted line, one frame per (sampled) iteration."""
    plt = _plt()
    from matplotlib.animation import FuncAnimation, PillowWriter

    if not one_feature(trace):
        raise TraceInputError("trace: fitted lines need a one-feature, one-output dense model with every step recorded")
    data = _fit_curves(trace)
    rows, _, lo, hi = _per_step_samples(trace)
    idx = _pick(trace.n_steps, MAX_FRAMES)
    fig, ax = plt.subplots(figsize=(7.6, 4.2))
    x, y, grid, before, after = data
    ylo = min(y.min(), np.nanmin(after[idx]), np.nanmin(before[idx]))
    yhi = max(y.max(), np.nanmax(after[idx]), np.nanmax(before[idx]))
    pad = 0.05 * (yhi - ylo or 1.0)

    steps = trace.steps
    ax.scatter(x, y, s=6 if len(x) > 100 else 14, color="0.7", label="data rows")
    full_batch = bool(np.all(hi - lo >= len(x)))
    batch_pts = ax.scatter([], [], s=22, color="C3", zorder=3,
                           label="_nolegend_" if full_batch else "this batch")
    (line_b,) = ax.plot([], [], color="C0", ls="--", lw=1.2, label="before the update")
    (line_a,) = ax.plot([], [], color="C2", lw=1.6, label="after the update")
    ax.set_ylim(ylo - pad, yhi + pad)
    ax.set_xlim(grid[0], grid[-1])
    ax.set_xlabel(plain_label(trace.input_columns[0] if trace.input_columns else "x"))
    ax.set_ylabel(plain_label(trace.target_columns[0] if trace.target_columns else "y"))
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0, frameon=False)
    ax.grid(alpha=0.3)
    ax.set_title("iteration 0 (epoch 0, batch 0)")
    fig.tight_layout()

    def frame(k):
        s_ = int(idx[k])
        batch = rows[lo[s_]:hi[s_]]
        show = batch if 0 < len(batch) < len(x) else np.zeros(0, int)
        batch_pts.set_offsets(np.column_stack([x[show], y[show]]) if len(show) else np.empty((0, 2)))
        line_b.set_data(grid, before[s_])
        line_a.set_data(grid, after[s_])
        ax.set_title(f"iteration {int(steps['step'].iloc[s_])} of {trace.n_steps} "
                     f"(epoch {int(steps['epoch'].iloc[s_])}, batch {int(steps['batch'].iloc[s_])})")
        return batch_pts, line_b, line_a

    anim = FuncAnimation(fig, frame, frames=len(idx))
    path = Path(path).with_suffix(".gif")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with replacing_file(path) as tmp:
            anim.save(tmp, writer=PillowWriter(fps=fps), dpi=80)
    except OSError as exc:
        raise TraceFileError(f"cannot write animation {path}: {exc.strerror or exc}") from None
    finally:
        plt.close(fig)
    return path
