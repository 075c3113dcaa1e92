"""Recompute what the framework *logged* after each batch and each epoch.

Why: the numbers Keras prints are not the current batch's. After each batch it
logs a running value over the epoch so far: the loss is the batch-size-weighted
mean of the batch losses, a stateful metric such as ``RootMeanSquaredError``
accumulates its total and count over every prediction of the epoch so far; both
are reset when an epoch starts and both use the predictions made *before* each
update. Learners compare these numbers with the wrong thing (S2); the checker
shows they follow exactly from the recorded predictions and targets.

:func:`check_logged` returns plain rows (``step``, ``quantity``, ``param``,
``sample``, ``expected``, ``actual``) that the checker turns into its report.
:func:`logged_values` gives the recomputed series (per-batch and running) that
:mod:`tracer.reconcile` explains.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from ..errors import SteptraceError
from ..math.metrics import get_metric, loss_terms, running

if TYPE_CHECKING:
    from collections.abc import Callable

    from ..trace import Trace

__all__ = ["check_logged", "logged_values", "metric_series", "LoggedSeries", "padded_batches", "metric_spec"]


@dataclass
class LoggedSeries:
    """One logged quantity recomputed for every step that can be recomputed.

    ``steps``/``epochs`` are the (1-based) step and epoch numbers; ``batch_value`` the
    quantity on each batch alone; ``total``/``count`` each batch's contribution to the
    running state; ``running`` what the framework should log after each batch;
    ``actual`` what it did log (NaN where nothing was logged).
    """

    name: str
    describe: str
    steps: np.ndarray
    epochs: np.ndarray
    batch_size: np.ndarray
    batch_value: np.ndarray
    total: np.ndarray
    count: np.ndarray
    running: np.ndarray
    actual: np.ndarray
    notes: list = field(default_factory=list)
    scales: np.ndarray | None = None       # rounding magnitudes of ``running`` (losses only, when needed)


def padded_batches(trace: Trace, steps: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """Predictions and targets of ``steps`` padded to ``(S, Bmax, m)`` plus a row mask.

    Padding repeats each step's first row (valid numbers for every loss); the mask
    marks real rows. Returns None when a step has no predictions or unknown rows.
    """
    a = trace.arrays()
    if a.sample_pred is None or a.targets is None or not len(steps):
        return None
    sstep, srow = np.asarray(a.sample_step), np.asarray(a.sample_row)
    keep = np.isin(sstep, steps)
    idx = np.flatnonzero(keep)
    if not idx.size:
        return None
    order = idx[np.argsort(sstep[idx], kind="stable")]
    st = sstep[order]
    uniq, start, counts = np.unique(st, return_index=True, return_counts=True)
    if len(uniq) != len(steps) or np.any(srow[order] < 0) or np.any(np.isnan(a.sample_pred[order])):
        return None
    pos = np.arange(order.size) - np.repeat(start, counts)
    which = np.searchsorted(uniq, st)
    bmax = int(counts.max())
    flat = np.repeat(order[start], bmax).reshape(len(uniq), bmax)   # first row of each step
    flat[which, pos] = order
    mask = np.zeros((len(uniq), bmax), dtype=bool)
    mask[which, pos] = True
    # align to the order of `steps`
    perm = np.searchsorted(uniq, steps)
    flat, mask = flat[perm], mask[perm]
    yp = np.asarray(a.sample_pred, dtype=np.float64)[flat]
    yt = np.asarray(a.targets, dtype=np.float64)[srow[flat]]
    return yp, yt, mask


def metric_spec(meta: dict, name: str) -> dict | None:
    """The ``meta["metrics"]`` entry logged as ``name`` (also matched by kind, e.g. ``rmse``)."""
    metrics = meta.get("metrics") or []
    for m in metrics:
        if m.get("name") == name:
            return m
    aliases = {"rmse": "root_mean_squared_error", "mse": "mean_squared_error", "mae": "mean_absolute_error",
               "acc": "accuracy"}
    for m in metrics:
        if m.get("kind") == name or m.get("name") == aliases.get(name):
            return m
    return None


def _complete_epochs(steps_tab: dict, recorded: np.ndarray) -> np.ndarray:
    """Steps of epochs whose every batch (1..K, consecutive steps) was recorded with predictions."""
    epoch = np.asarray(steps_tab["epoch"], dtype=np.int64)
    batch = np.asarray(steps_tab["batch"], dtype=np.int64)
    step = np.asarray(steps_tab["step"], dtype=np.int64)
    if not len(step):
        return np.zeros(0, dtype=bool)
    first = np.r_[True, epoch[1:] != epoch[:-1]]
    # a step is fine if it has predictions and continues its epoch without a gap
    good = np.isin(step, recorded) & np.where(first, batch == 1, np.r_[False, (np.diff(batch) == 1)
                                                                     & (np.diff(step) == 1)])
    group = np.cumsum(first) - 1
    bad_groups = np.bincount(group, weights=~good, minlength=group[-1] + 1) > 0
    return ~bad_groups[group]


def _series_frame(trace):
    """``(steps, epochs, batch sizes, padded predictions/targets/mask, ok mask)`` of the complete
    epochs, or None when no epoch can be recomputed."""
    a = trace.arrays()
    tab = a.steps
    if not tab or "step" not in tab or a.sample_pred is None:
        return None
    ok = _complete_epochs(tab, np.unique(a.sample_step))
    if not ok.any():
        return None
    steps = np.asarray(tab["step"], dtype=np.int64)[ok]
    epochs = np.asarray(tab["epoch"], dtype=np.int64)[ok]
    padded = padded_batches(trace, steps)
    if padded is None:
        return None
    return steps, epochs, padded[2].sum(axis=1).astype(np.float64), padded, ok


def _actual(trace, key, ok):
    col = trace.arrays().steps.get("logged_" + key)
    if col is None:
        return np.full(int(ok.sum()), np.nan)
    return np.asarray(col, dtype=np.float64)[ok]


def _batch_loss(trace, steps, ok, batch_losses, notes):
    """The batch losses the step program gives (else the recorded ones, said in ``notes``)."""
    if batch_losses is None:
        from .recompute import batch_losses as recompute
        try:
            batch_losses = recompute(trace, steps)
        except SteptraceError as exc:
            notes.append(f"loss not recomputed ({exc}); the recorded batch loss is used")
            batch_losses = {}
    if batch_losses and all(int(s) in batch_losses for s in steps):
        return np.array([batch_losses[int(s)] for s in steps], dtype=np.float64)
    tab = trace.arrays().steps
    if "loss" in tab:
        notes.append("the loss could not be recomputed from the model: the recorded batch loss is used")
        return np.asarray(tab["loss"], dtype=np.float64)[ok]
    return None


def metric_series(trace: Trace, spec: str | dict, batch_losses: dict | None = None) -> LoggedSeries | None:
    """One quantity recomputed at every recomputable step as Keras would log it, whether or not
    the run logged it: ``spec`` is ``"loss"``, a ``meta["metrics"]`` entry or a kind
    (``{"kind": "rmse"}``). None when it cannot be recomputed (no predictions, an
    unsupported metric)."""
    frame = _series_frame(trace)
    if frame is None:
        return None
    steps, epochs, bsize, (yp, yt, mask), ok = frame
    if spec == "loss":
        notes: list = []
        batch_loss = _batch_loss(trace, steps, ok, batch_losses, notes)
        if batch_loss is None:
            return None
        total, count = loss_terms(batch_loss, bsize)
        ct, cc = running(total, count, epochs)
        return LoggedSeries("loss", "mean of the batch losses of the epoch so far, weighted by batch size",
                            steps, epochs, bsize, batch_loss, total, count, ct / cc, _actual(trace, "loss", ok),
                            notes)
    try:
        metric = get_metric(spec)
        total, count = metric.batch_terms(yp, yt, mask)
    except SteptraceError:
        return None
    ct, cc = running(total, count, epochs)
    return LoggedSeries(metric.name, metric.describe(), steps, epochs, bsize, metric.result(total, count),
                        total, count, metric.result(ct, cc), _actual(trace, metric.name, ok))


def logged_values(trace: Trace, batch_losses: dict | None = None) -> dict[str, LoggedSeries]:
    """Recompute every logged per-batch quantity (``loss`` and each metric) by hand.

    Only epochs whose batches were all recorded with predictions are recomputed (a
    running value needs every batch before it). ``batch_losses`` (step -> loss, as the
    checker recomputed them from the step program) saves recomputing them here.
    """
    tab = trace.arrays().steps
    out: dict[str, LoggedSeries] = {}
    if "logged_loss" in tab:
        s = metric_series(trace, "loss", batch_losses)
        if s is not None:
            out["loss"] = s
    for spec in trace.meta.get("metrics") or []:
        name = spec.get("name")
        if not name or "logged_" + name not in tab:
            continue
        s = metric_series(trace, spec)
        if s is not None:
            out[name] = s
    return out


def check_logged(trace: Trace, batch_losses: dict | None = None,
                 loss_magnitudes: Callable[[np.ndarray], dict[int, float]] | None = None,
                 rtol: float = 1e-5) -> list[dict]:
    """Rows comparing every logged per-batch and per-epoch value with its recomputation.

    Each row: ``step``, ``quantity`` (``logged_<name>`` after a batch,
    ``epoch_logged_<name>`` at an epoch's end; the step is then the epoch's last
    step), ``param`` and ``sample`` (None), ``expected`` (recomputed) and
    ``actual`` (what the framework logged). ``loss_magnitudes(steps) -> {step: M}``,
    when given, supplies the batch losses' rounding magnitudes: a logged loss that
    misses the fixed ``rtol`` is then judged against the running mean of those (a
    saturated cross-entropy is ill-conditioned in float32), like the loss check itself.
    """
    rows = []
    series = logged_values(trace, batch_losses)
    if loss_magnitudes is not None and "loss" in series:
        _loss_scales(series["loss"], loss_magnitudes, rtol)
    epochs_tab = trace.arrays().epochs or {}
    ep_col = np.asarray(epochs_tab.get("epoch", []), dtype=np.int64)
    for name, s in series.items():
        scales = s.scales
        for i, (step, exp, act) in enumerate(zip(s.steps.tolist(), s.running.tolist(), s.actual.tolist())):
            if np.isnan(act):
                continue
            rows.append({"step": int(step), "quantity": "logged_" + name, "param": None, "sample": None,
                         "expected": float(exp), "actual": float(act),
                         "scale": None if scales is None else float(scales[i])})
        logged = epochs_tab.get("logged_" + name)
        if logged is None:
            continue
        logged = np.asarray(logged, dtype=np.float64)
        for e in np.unique(s.epochs):
            hit = np.flatnonzero(ep_col == e)
            if not hit.size or np.isnan(logged[hit[0]]):
                continue
            last = np.flatnonzero(s.epochs == e)[-1]
            rows.append({"step": int(s.steps[last]), "quantity": "epoch_logged_" + name, "param": None,
                         "sample": None, "expected": float(s.running[last]), "actual": float(logged[hit[0]]),
                         "scale": None if scales is None else float(scales[last])})
    return rows


def _loss_scales(s: LoggedSeries, loss_magnitudes, rtol: float) -> None:
    """Set ``s.scales`` (running mean of the batch losses' magnitudes) when a logged loss
    misses the fixed tolerance; computed only then (it costs a forward pass)."""
    with np.errstate(invalid="ignore"):
        miss = np.abs(s.running - s.actual) > rtol * np.maximum(np.abs(s.running), np.abs(s.actual))
    if not np.any(miss & ~np.isnan(s.actual)):
        return
    mags = loss_magnitudes(s.steps)
    m = np.array([mags.get(int(k), np.nan) for k in s.steps])
    if not np.isfinite(m).all():
        return
    total, count = loss_terms(m, s.batch_size)
    ct, cc = running(total, count, s.epochs)
    s.scales = ct / cc
