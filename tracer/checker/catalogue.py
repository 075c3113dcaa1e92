"""A catalogue of what a logged number could have been computed as, step by step.

Why: a value logged as ``rmse`` is not necessarily a root mean squared error. A
hand-written Keras metric ``sqrt(mean(square(y - p), axis=-1))`` is averaged per row,
so on one output it is the mean *absolute* error; a callback may average per-batch
values instead of pooling rows, use the weights after the update, threshold logits at
0.5 or take the argmax of a single column. Each computation here is recomputed from
the recorded predictions and targets (the weights after the update: the step program
on the same batch rows) as the running value Keras would log after each batch, so a
logged series can be matched against all of them (:mod:`.diagnoses.logged_names`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..math.metrics import running

if TYPE_CHECKING:
    from ..program import StepProgram
    from ..trace import Trace

__all__ = ["Entry", "step_catalogue", "val_catalogue", "promised", "short"]


@dataclass
class Entry:
    """One computation: ``key`` (what, how aggregated, which weights), ``text`` in words,
    ``values`` per step (or per epoch for the validation catalogue)."""

    key: tuple
    text: str
    values: np.ndarray


_WHAT = {
    "rmse": "root mean squared error", "mse": "mean squared error", "mae": "mean absolute error",
    "rowrmse": "mean of per-row RMSEs (on one output: the mean absolute error)",
    "acc05": "accuracy with a 0.5 threshold on the outputs",
    "acc0": "accuracy with a 0 threshold on the outputs (0.5 on the probabilities, when they are logits)",
    "argmax": "accuracy of the argmax",
    "argmax1": "accuracy of an argmax over a single column (always class 0) against class numbers",
    "argmax1c": "accuracy of an argmax over a single column (always class 0) against one-hot targets",
    "loss": "loss",
    "rmse_bc": "root mean squared error of every prediction against every target of the batch (targets shaped "
               "(n,) broadcast against predictions (n, 1))",
    "mse_bc": "mean squared error of every prediction against every target of the batch (targets shaped (n,) "
              "broadcast against predictions (n, 1))",
    "mae_bc": "mean absolute error of every prediction against every target of the batch (targets shaped (n,) "
              "broadcast against predictions (n, 1))",
    "rowrmse_bc": "mean of per-row RMSEs of every prediction against every target of the batch (targets shaped "
                  "(n,) broadcast against predictions (n, 1))",
}
#: largest steps x batch x batch evaluated for the broadcast candidates
BROADCAST_LIMIT = 20_000_000
_HOW = {
    "pooled": "running {w} (every row of the epoch so far pooled)",
    "batchmean": "mean of the per-batch {w} values so far (not weighted by batch size)",
    "batchweighted": "batch-size-weighted mean of the per-batch {w} values so far",
    "batch": "{w} of the current batch alone (not a running value)",
}


def _text(what, how, which) -> str:
    after = "" if which == "before" else ", with the weights after the update"
    return _HOW[how].format(w=_WHAT[what]) + after


def short(key: tuple[str, str, str]) -> str:
    """``running root mean squared error``: what a catalogue key computes, in a few words."""
    return _HOW[key[1]].format(w=_WHAT[key[0]]).split(" (")[0]


def _broadcast_rows(yp, yt, mask) -> dict:
    """Per-row values when targets ``(n,)`` meet predictions ``(n, 1)``: row i compares its
    prediction with every target of the batch (NumPy's and TensorFlow's broadcasting)."""
    S, B, _ = yp.shape
    if S * B * B > BROADCAST_LIMIT:
        return {}
    d = yt[:, None, :, 0] - yp[:, :, None, 0]                  # (S, i, j)
    w = mask[:, None, :].astype(np.float64)
    n = w.sum(axis=2)
    sq = (d ** 2 * w).sum(axis=2) / n
    return {"mse_bc": sq, "mae_bc": (np.abs(d) * w).sum(axis=2) / n, "rowrmse_bc": np.sqrt(sq)}


def _row_values(yp, yt, m, mask=None) -> dict:
    """Per-row values ``(S, B)`` of every per-row computation that applies."""
    if yt.shape[-1] != yp.shape[-1]:       # class numbers against several output columns
        if yt.shape[-1] != 1:
            return {}
        return {"argmax": (yp.argmax(-1) == yt[..., 0]).astype(np.float64)}
    e = yp - yt
    out = {"mse": np.mean(e ** 2, axis=-1), "mae": np.mean(np.abs(e), axis=-1),
           "rowrmse": np.sqrt(np.mean(e ** 2, axis=-1))}
    if m == 1 and mask is not None:
        out.update(_broadcast_rows(yp, yt, mask))
    binary = np.all((yt == 0) | (yt == 1))
    if binary:
        out["acc05"] = np.mean((yp > 0.5) == (yt == 1), axis=-1)
        out["acc0"] = np.mean((yp > 0) == (yt == 1), axis=-1)
    if m > 1 and binary:
        out["argmax"] = (yp.argmax(-1) == yt.argmax(-1)).astype(np.float64)
    if m == 1 and np.all(yt == np.round(yt)):
        out["argmax1"] = (yt[..., 0] == 0).astype(np.float64)   # sparse class numbers against one column
        out["argmax1c"] = np.ones(yt.shape[:-1])                 # one-hot: both argmaxes are 0
    return out


def _aggregations(v, mask, epochs, what) -> dict:
    """Running values per step of per-row values ``v`` (S, B) under each aggregation."""
    count = mask.sum(axis=1).astype(np.float64)
    total = np.where(mask, v, 0.0).sum(axis=1)
    ct, cc = running(total, count, epochs)
    pooled = ct / cc
    batch = total / count
    if what in ("rmse", "rmse_bc"):
        pooled, batch = np.sqrt(pooled), np.sqrt(batch)
    out = {"pooled": pooled, "batch": batch}
    bt, bc = running(batch, np.ones_like(batch), epochs)
    out["batchmean"] = bt / bc
    if what == "rmse":
        wt, wc = running(batch * count, count, epochs)
        out["batchweighted"] = wt / wc
    return out


def _entries(rows: dict, mask, epochs, which) -> list:
    out = []
    for what, v in rows.items():
        names = ["rmse", "mse"] if what == "mse" else ["rmse_bc", "mse_bc"] if what == "mse_bc" else [what]
        for w in names:
            for how, vals in _aggregations(v, mask, epochs, w).items():
                out.append(Entry((w, how, which), _text(w, how, which), vals))
    return out


def _loss_entries(batch_loss, bsize, epochs, which) -> list:
    if batch_loss is None or not np.isfinite(batch_loss).all():
        return []
    t, c = running(batch_loss * bsize, bsize, epochs)
    u, k = running(batch_loss, np.ones_like(batch_loss), epochs)
    return [Entry(("loss", "pooled", which), _text("loss", "pooled", which), t / c),
            Entry(("loss", "batchmean", which), _text("loss", "batchmean", which), u / k),
            Entry(("loss", "batch", which), _text("loss", "batch", which), np.asarray(batch_loss, float))]


def _after(trace, program, steps, yp, mask):
    """Predictions of each step's batch rows with the weights after the update, and the losses."""
    from .recompute import batch_series
    try:
        series = batch_series(trace, "after", program)
    except Exception:   # noqa: BLE001 - the 'after' candidates are optional evidence
        return None, None
    out = np.array(yp, copy=True)
    loss = np.full(len(steps), np.nan)
    for k, s in enumerate(steps.tolist()):
        got = series.get(int(s))
        if got is None or got[0] is None or got[0].shape[0] != int(mask[k].sum()):
            return None, None
        out[k, mask[k]] = got[0]
        loss[k] = got[1]
    return out, loss


def step_catalogue(trace: Trace, program: StepProgram | None = None,
                   batch_losses: dict | None = None) -> tuple[np.ndarray, np.ndarray, list[Entry]] | None:
    """``(steps, epochs, [Entry])`` for every complete epoch, or None when none can be recomputed."""
    from .logged import _batch_loss, _series_frame
    frame = _series_frame(trace)
    if frame is None:
        return None
    steps, epochs, bsize, (yp, yt, mask), ok = frame
    m = yp.shape[-1]
    entries = _entries(_row_values(yp, yt, m, mask), mask, epochs, "before")
    entries += _loss_entries(_batch_loss(trace, steps, ok, batch_losses, []), bsize, epochs, "before")
    if program is not None:
        yp_after, loss_after = _after(trace, program, steps, yp, mask)
        if yp_after is not None:
            entries += _entries(_row_values(yp_after, yt, m, mask), mask, epochs, "after")
            entries += _loss_entries(loss_after if program.has_loss else None, bsize, epochs, "after")
    return steps, epochs, entries


def val_catalogue(trace: Trace, program: StepProgram | None, last_steps: np.ndarray) -> list:
    """Per epoch (its last step): every computation on all data rows with the weights after the
    epoch, for ``val_*`` values when the validation rows are the training rows."""
    from .recompute import full_data_series
    fd = full_data_series(trace, "after", program, steps=last_steps)
    out = []
    if fd.loss is not None:
        out.append(Entry(("loss", "pooled", "after"), "loss on all rows, weights after the epoch", fd.loss))
    if fd.prediction is None:
        return out
    yt = np.broadcast_to(trace.arrays().targets[None].astype(np.float64), fd.prediction.shape[:2] +
                         (trace.arrays().targets.shape[1],))
    mask = np.ones(fd.prediction.shape[:2], dtype=bool)
    epochs = np.arange(len(fd.steps))            # each entry its own "epoch": no running across them
    for e in _entries(_row_values(fd.prediction, yt, fd.prediction.shape[-1]), mask, epochs, "after"):
        if e.key[1] == "pooled":
            out.append(Entry(e.key, _WHAT[e.key[0]] + " on all rows, weights after the epoch", e.values))
    return out


def promised(kind: str, logits: bool, m: int) -> tuple | None:
    """The catalogue key of what a name promises: Keras's own computation of ``kind``."""
    if kind in ("rmse", "mse", "mae", "loss"):
        return (kind, "pooled", "before")
    if kind in ("accuracy", "binary_accuracy", "categorical_accuracy", "sparse_categorical_accuracy"):
        if m > 1:
            return ("argmax", "pooled", "before")
        return ("acc0" if logits else "acc05", "pooled", "before")
    return None
