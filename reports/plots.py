"""Plots of a trace (matplotlib, PNG and SVG; the fitted line also as an animated GIF).

Why these pictures: each answers a question a learner asks of a run.

- :func:`plot_loss` - *why does the number Keras prints differ from mine?* The batch loss
  per iteration with epoch boundaries, the values the framework logged (running means
  over the epoch so far) drawn on top, and the full-data value after each update. With
  an RMSE (or MSE/MAE) metric logged, a second panel shows the three versions of it:
  the running logged value, the batch's own value and the full-data value after the
  update - the picture that explains scenario S2.
- :func:`plot_params` - where each parameter went, iteration by iteration.
- :func:`plot_fits` / :func:`animate_fits` - for one-feature models, the fitted line at
  each iteration over the data, the batch's rows highlighted (small multiples, GIF).
- :func:`plot_gradients` - gradient norm and update size per parameter (log scale).

:func:`save_all` writes all that apply and returns the paths.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from tracer.atomic import replacing_file
from tracer.errors import TraceFileError, TraceInputError

from ._model import dense_layers, forward, params_at
from ._safe import plain_label

#: most parameter elements drawn per parameter in :func:`plot_params`
MAX_ELEMENTS_PER_PARAM = 8
#: most panels in :func:`plot_fits` and frames in :func:`animate_fits`
MAX_PANELS = 12
MAX_FRAMES = 30

_METRIC_KINDS = {"root_mean_squared_error": "rmse", "rmse": "rmse", "mean_squared_error": "mse",
                 "mse": "mse", "mean_absolute_error": "mae", "mae": "mae"}
_METRIC_LABEL = {"rmse": "RMSE", "mse": "MSE", "mae": "MAE"}


def _plt():
    import matplotlib
    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    return plt


def _iterations(trace):
    return trace.steps["step"].to_numpy()


def _int_ticks(ax):
    from matplotlib.ticker import MaxNLocator
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def _epoch_lines(ax, trace):
    steps = trace.steps
    if steps["epoch"].nunique() < 2 or steps["epoch"].nunique() > 60:
        return
    starts = steps.groupby("epoch")["step"].min().to_numpy()[1:]
    for i, s in enumerate(starts):
        ax.axvline(s - 0.5, color="0.6", lw=0.8, ls=":", label="epoch boundary" if i == 0 else None)


def _per_step_samples(trace):
    """(order-sorted) sample steps, rows, predictions and the slice bounds per step."""
    a = trace.arrays()
    order = np.argsort(a.sample_step, kind="stable")
    step = a.sample_step[order]
    rows = a.sample_row[order]
    pred = None if a.sample_pred is None else a.sample_pred[order]
    ids = _iterations(trace)
    lo = np.searchsorted(step, ids, "left")
    hi = np.searchsorted(step, ids, "right")
    return rows, pred, lo, hi


def _metric_value(kind, d):
    """Value of metric ``kind`` over residuals ``d`` (any shape; reduced over the last 2 axes)."""
    if kind == "mse":
        return np.mean(d ** 2, axis=(-2, -1))
    if kind == "rmse":
        return np.sqrt(np.mean(d ** 2, axis=(-2, -1)))
    return np.mean(np.abs(d), axis=(-2, -1))


def _batch_metric(trace, kind):
    a = trace.arrays()
    rows, pred, lo, hi = _per_step_samples(trace)
    if pred is None or a.targets is None or (rows < 0).any():
        return None
    d = pred - a.targets[rows]
    out = np.full(len(lo), np.nan)
    for i, (l, h) in enumerate(zip(lo, hi)):
        if h > l:
            out[i] = _metric_value(kind, d[l:h][None])[0]
    return out


def _full_data_after(trace):
    """Predictions of the updated model on all data rows, ``(S, n, m)``, or None."""
    a = trace.arrays()
    if a.inputs is None or not a.params or dense_layers(trace.meta) is None:
        return None
    if len(a.param_step) != trace.n_steps:
        return None
    return forward(trace.meta, params_at(trace, "after"), a.inputs)


def _full_data_loss(trace, pred_all):
    if pred_all is None or not trace.meta.get("loss"):
        return None
    try:
        from tracer.math.losses import get_loss
        loss = get_loss(trace.meta["loss"])
        yt = np.broadcast_to(trace.arrays().targets, pred_all.shape)
        return loss.value(pred_all, yt)
    except Exception:   # a loss without a formula: draw what was recorded only
        return None


def _save(fig, path, formats):
    plt = _plt()
    out = []
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        for fmt in formats:
            p = path.with_suffix("." + fmt)
            with replacing_file(p) as tmp:        # a full disk leaves no partial image
                fig.savefig(tmp, dpi=110, bbox_inches="tight", format=fmt)
            out.append(p)
    except OSError as exc:
        raise TraceFileError(f"cannot write plot {path}: {exc.strerror or exc}") from None
    finally:
        plt.close(fig)
    return out


def _require_steps(trace):
    if trace.n_steps == 0 or "loss" not in trace.steps.columns:
        raise TraceInputError("trace: no recorded steps to plot")


def plot_loss(trace, path=None, formats=("png", "svg")):
    """Loss per iteration (and logged metrics); returns the figure, or the paths if ``path``."""
    _require_steps(trace)
    plt = _plt()
    steps = trace.steps
    it = _iterations(trace)
    logged = [c for c in steps.columns if c.startswith("logged_") and c != "logged_loss"
              and _METRIC_KINDS.get(c[len("logged_"):]) is not None]
    n_panels = 1 + len(logged)
    fig, axes = plt.subplots(n_panels, 1, figsize=(9, 3.6 * n_panels), sharex=True, squeeze=False)
    axes = axes[:, 0]
    pred_all = _full_data_after(trace)
    ax = axes[0]
    marker = "o" if len(it) <= 60 else None
    ax.plot(it, steps["loss"], marker=marker, ms=4, lw=1.4, color="C0",
            label="batch loss (this batch, weights before the update)")
    if "logged_loss" in steps.columns:
        ax.plot(it, steps["logged_loss"], marker="s" if marker else None, ms=4, lw=1.2, color="C1",
                ls="--", label="loss logged by the framework (running mean over the epoch so far)")
    full = _full_data_loss(trace, pred_all)
    if full is not None:
        ax.plot(it, full, marker="^" if marker else None, ms=4, lw=1.2, color="C2",
                label="loss on all data rows, weights after the update")
    loss = trace.meta.get("loss") or {}
    ax.set_ylabel(plain_label(f"loss ({loss.get('name', 'as recorded')})"))
    ax.set_title("Loss per iteration")
    _epoch_lines(ax, trace)
    if np.nanmax(np.abs(steps["loss"].to_numpy(float))) / max(np.nanmin(np.abs(steps["loss"].to_numpy(float))), 1e-300) > 1e3:
        ax.set_yscale("log")
    ax.legend(fontsize=8, loc="upper right")
    ax.grid(alpha=0.3)
    for ax, col in zip(axes[1:], logged):
        key = col[len("logged_"):]
        kind = _METRIC_KINDS[key]
        lab = _METRIC_LABEL[kind]
        ax.plot(it, steps[col], marker="s" if marker else None, ms=4, ls="--", color="C1",
                label=f"{lab} logged by the framework (running, over the epoch so far)")
        b = _batch_metric(trace, kind)
        if b is not None:
            ax.plot(it, b, marker=marker, ms=4, color="C0", label=f"{lab} of this batch (weights before the update)")
        if pred_all is not None:
            d = pred_all - trace.arrays().targets[None]
            ax.plot(it, _metric_value(kind, d), marker="^" if marker else None, ms=4, color="C2",
                    label=f"{lab} on all data rows (weights after the update)")
        ax.set_ylabel(plain_label(f"{lab} ({key})"))
        ax.set_title(f"{lab}: what was logged vs what the batch and the updated model give")
        _epoch_lines(ax, trace)
        ax.legend(fontsize=8, loc="upper right")
        ax.grid(alpha=0.3)
    axes[-1].set_xlabel("iteration (optimizer step)")
    _int_ticks(axes[-1])
    fig.tight_layout()
    return _save(fig, path, formats) if path is not None else fig


def plot_params(trace, path=None, formats=("png", "svg")):
    """Each parameter's path: its value before the first step, then after each update."""
    plt = _plt()
    names = trace.param_names
    if not names:
        raise TraceInputError("trace: no parameter values were recorded (summary capture?)")
    fig, axes = plt.subplots(len(names), 1, figsize=(9, 3.0 * len(names)), sharex=True, squeeze=False)
    it = trace.arrays().param_step
    for ax, name in zip(axes[:, 0], names):
        before = trace.param_values(name, "before").reshape(len(it), -1)
        after = trace.param_values(name, "after").reshape(len(it), -1)
        x = np.concatenate([[it[0] - 1], it]) if len(it) else it
        for e in range(min(before.shape[1], MAX_ELEMENTS_PER_PARAM)):
            y = np.concatenate([[before[0, e]], after[:, e]])
            lab = plain_label(name if before.shape[1] == 1 else f"{name}[{e}]")
            ax.plot(x, y, marker="o" if len(it) <= 60 else None, ms=3, label=lab)
        more = before.shape[1] - MAX_ELEMENTS_PER_PARAM
        title = plain_label(f"{name} {list(trace.param_shape(name))}")
        if more > 0:
            title += f" (first {MAX_ELEMENTS_PER_PARAM} elements of {before.shape[1]})"
        ax.set_title(title)
        ax.set_ylabel("value")
        ax.grid(alpha=0.3)
        _epoch_lines(ax, trace)
        ax.legend(fontsize=8, loc="best", ncol=2)
    axes[-1, 0].set_xlabel("iteration (0 = initial value, k = after update k)")
    _int_ticks(axes[-1, 0])
    fig.tight_layout()
    return _save(fig, path, formats) if path is not None else fig


def plot_gradients(trace, path=None, formats=("png", "svg")):
    """Gradient norm and update size (L2 norm of after - before) per parameter, log scale."""
    plt = _plt()
    names = trace.param_names
    if not names:
        raise TraceInputError("trace: no parameter values were recorded (summary capture?)")
    it = trace.arrays().param_step
    fig, axes = plt.subplots(2, 1, figsize=(9, 6.5), sharex=True)
    for i, name in enumerate(names):
        g = trace.param_values(name, "grad").reshape(len(it), -1)
        u = trace.param_values(name, "update").reshape(len(it), -1)
        if np.isfinite(g).any():
            axes[0].plot(it, np.linalg.norm(g, axis=1), color=f"C{i}", label=plain_label(name))
        axes[1].plot(it, np.linalg.norm(u, axis=1), color=f"C{i}", label=plain_label(name))
    for ax, title in zip(axes, ["gradient norm ||dL/dp||", "update size ||p_after - p_before||"]):
        ax.set_yscale("log")
        ax.set_ylabel(title.split(" ")[0] + " norm" if ax is axes[0] else "update size")
        ax.set_title(title + " per iteration")
        ax.grid(alpha=0.3, which="both")
        _epoch_lines(ax, trace)
        ax.legend(fontsize=8)
    axes[1].set_xlabel("iteration (optimizer step)")
    _int_ticks(axes[1])
    fig.tight_layout()
    return _save(fig, path, formats) if path is not None else fig


def one_feature(trace) -> bool:
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


def plot_fits(trace, path=None, formats=("png", "svg"), iterations=None):
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
    fig.suptitle("Fitted line before and after the update, at " +
                 ("every iteration" if len(idx) == trace.n_steps else f"{len(idx)} of {trace.n_steps} iterations"))
    fig.legend(handles, labels, loc="lower center", ncol=4, fontsize=9, frameon=False,
               bbox_to_anchor=(0.5, 0.0))
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    return _save(fig, path, formats) if path is not None else fig


def animate_fits(trace, path, fps: int = 4) -> Path:
    """An animated GIF of the fitted line, one frame per (sampled) iteration."""
    plt = _plt()
    from matplotlib.animation import FuncAnimation, PillowWriter

    if not one_feature(trace):
        raise TraceInputError("trace: fitted lines need a one-feature, one-output dense model with every step recorded")
    data = _fit_curves(trace)
    rows, _, lo, hi = _per_step_samples(trace)
    idx = _pick(trace.n_steps, MAX_FRAMES)
    fig, ax = plt.subplots(figsize=(6, 4.2))
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
    ax.legend(fontsize=8, loc="upper left")
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


def save_all(trace, directory, formats=("png", "svg"), progress=None) -> list[Path]:
    """Write every plot that applies to ``trace`` into ``directory``; returns the paths."""
    _require_steps(trace)
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
