"""Keras-style stateful metrics: what ``fit`` logs after each batch, recomputed by hand.

Why: Keras logs a *running* value over the epoch so far, not the current batch's value
(S2: batch losses 73.885 then 301.58 are logged as 73.885 then 187.73). A metric keeps
``total`` and ``count`` and reports ``result(total, count)``; both are reset at each
epoch start. Here ``batch_terms`` gives each step's contribution, :func:`running` sums
them within each epoch and :meth:`Metric.result` turns them into the logged values.

Per-sample values follow Keras 3.15 ``MeanMetricWrapper`` / ``reduce_to_samplewise_values``:
a sample's value is the mean over its outputs, ``total`` adds the samples' values and
``count`` adds the number of samples. The formulas are sympy expressions of one
prediction/target pair (accuracies compare argmaxes, which are not elementwise).
"""
from __future__ import annotations

import numpy as np
import sympy as sp

from ..errors import TraceInputError, UnsupportedError
from ..program.numpy_names import numpy_lambdify
from .losses import y_pred, y_true

__all__ = ["Metric", "get_metric", "running", "loss_terms", "METRIC_KINDS"]

METRIC_KINDS = ("mse", "rmse", "mae", "binary_accuracy", "categorical_accuracy",
                "sparse_categorical_accuracy", "accuracy", "exact_accuracy", "loss")

_KIND_ALIASES = {
    "mean_squared_error": "mse", "root_mean_squared_error": "rmse", "mean_absolute_error": "mae",
    "acc": "accuracy", "binary_acc": "binary_accuracy", "categorical_acc": "categorical_accuracy",
    "sparse_categorical_acc": "sparse_categorical_accuracy",
}
_DESCRIBE = {
    "mse": "mean squared error over all predictions of the epoch so far",
    "rmse": "square root of the mean squared error over all predictions of the epoch so far",
    "mae": "mean absolute error over all predictions of the epoch so far",
    "binary_accuracy": "share of outputs on the right side of 0.5, over the epoch so far",
    "categorical_accuracy": "share of rows whose largest prediction is the target class, over the epoch so far",
    "sparse_categorical_accuracy": "share of rows whose largest prediction is the class number, over the epoch so far",
    "loss": "mean of the batch losses of the epoch so far, weighted by batch size",
    "exact_accuracy": "share of outputs exactly equal to their targets (keras.metrics.Accuracy), over the epoch so far",
}


class Metric:
    """A stateful metric: ``batch_terms`` -> (total, count) per step, ``result`` -> value."""

    def __init__(self, spec):
        if isinstance(spec, str):
            spec = {"kind": spec}
        if not isinstance(spec, dict):
            raise TraceInputError(f"metric spec: expected a dict like {{'kind': 'rmse'}}, got {type(spec).__name__}")
        kind = spec.get("kind") or spec.get("name")
        kind = _KIND_ALIASES.get(str(kind).lower(), str(kind).lower())
        if kind not in METRIC_KINDS:
            raise UnsupportedError(f"metric {kind!r}: steptrace has formulas for {', '.join(METRIC_KINDS)}")
        self.spec = dict(spec)
        self.kind = kind
        self.name = spec.get("name") or kind
        self.threshold = float(spec.get("threshold", 0.5))
        e = y_pred - y_true
        self.expr = {"mse": e ** 2, "rmse": e ** 2, "mae": sp.Abs(e),
                     "exact_accuracy": sp.Piecewise((1, sp.Eq(y_pred, y_true)), (0, True)),
                     "binary_accuracy": sp.Piecewise((1, sp.Eq(sp.Piecewise((1, y_pred > self.threshold), (0, True)), y_true)), (0, True)),
                     }.get(kind)
        self._f = numpy_lambdify([y_pred, y_true], self.expr) if self.expr is not None else None

    def resolve(self, y_pred_shape: tuple, y_true_shape: tuple) -> str:
        """The concrete kind: Keras resolves ``"accuracy"`` from the shapes (compile_utils.get_metric)."""
        if self.kind != "accuracy":
            return self.kind
        if y_pred_shape[-1] == 1:
            return "binary_accuracy"
        if len(y_true_shape) < len(y_pred_shape) or y_true_shape[-1] == 1:
            return "sparse_categorical_accuracy"
        return "categorical_accuracy"

    def samplewise(self, y_pred_v: np.ndarray, y_true_v: np.ndarray) -> np.ndarray:
        """Each row's value ``(S, B)`` (mean over its outputs; accuracies 0 or 1)."""
        yp = np.asarray(y_pred_v, dtype=np.float64)
        yt = np.asarray(y_true_v, dtype=np.float64)
        if yp.ndim != 3:
            raise TraceInputError(f"y_pred: expected an array shaped (steps, batch, outputs), got {yp.shape}")
        kind = self.resolve(yp.shape, yt.shape)
        if kind == "loss":
            raise TraceInputError("metric 'loss' is made from the batch losses: use loss_terms(loss, batch_size)")
        if kind == "sparse_categorical_accuracy":
            if yt.shape != yp.shape[:2] + (1,):
                raise TraceInputError(f"y_true: expected class numbers shaped {yp.shape[:2] + (1,)}, got {yt.shape}")
            return (yp.argmax(axis=-1) == yt[..., 0]).astype(np.float64)
        if yt.shape != yp.shape:
            raise TraceInputError(f"y_true: expected shape {yp.shape} (same as y_pred), got {yt.shape}")
        if kind == "categorical_accuracy":
            return (yp.argmax(axis=-1) == yt.argmax(axis=-1)).astype(np.float64)
        if kind == "binary_accuracy":
            return ((yp > self.threshold).astype(np.float64) == yt).mean(axis=-1)
        return (self._f(yp, yt) * np.ones_like(yp)).mean(axis=-1)

    def batch_terms(self, y_pred_v: np.ndarray, y_true_v: np.ndarray,
                    mask: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """``(total, count)``, each ``(S,)``: what one step adds to the metric's state."""
        vals = self.samplewise(y_pred_v, y_true_v)
        if mask is None:
            return vals.sum(axis=1), np.full(vals.shape[0], float(vals.shape[1]))
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != vals.shape:
            raise TraceInputError(f"mask: expected a boolean array shaped {vals.shape}, got {mask.shape}")
        return np.where(mask, vals, 0.0).sum(axis=1), mask.sum(axis=1).astype(np.float64)

    def result(self, total: np.ndarray, count: np.ndarray) -> np.ndarray:
        """The value the framework logs from accumulated ``total`` and ``count``."""
        total = np.asarray(total, dtype=np.float64)
        count = np.asarray(count, dtype=np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            r = np.where(count > 0, total / np.where(count > 0, count, 1.0), 0.0)
        return np.sqrt(r) if self.kind == "rmse" else r

    def describe(self) -> str:
        """What the logged number is, in words."""
        return _DESCRIBE.get(self.kind, "accuracy (binary, categorical or sparse, resolved from the shapes)")

    def __repr__(self):
        return f"Metric({self.kind!r})"


def get_metric(spec: dict | str) -> Metric:
    """Return the :class:`Metric` for one entry of ``meta["metrics"]`` (or a kind name)."""
    return Metric(spec)


def loss_terms(loss: np.ndarray, batch_size: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(total, count)`` of Keras's loss tracker: ``loss * batch_size`` and ``batch_size`` per step."""
    loss = np.asarray(loss, dtype=np.float64)
    b = np.broadcast_to(np.asarray(batch_size, dtype=np.float64), loss.shape)
    return loss * b, np.array(b)


def running(total: np.ndarray, count: np.ndarray, epoch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Running sums within each epoch: ``(cum_total, cum_count)``, reset where ``epoch`` changes.

    ``total``, ``count`` and ``epoch`` are ``(S,)`` in step order; feed the result to
    :meth:`Metric.result` to get what Keras logs after each batch.
    """
    total = np.asarray(total, dtype=np.float64)
    count = np.asarray(count, dtype=np.float64)
    epoch = np.asarray(epoch)
    if not (total.shape == count.shape == epoch.shape) or total.ndim != 1:
        raise TraceInputError(f"total, count, epoch: expected three (S,) arrays, got "
                              f"{total.shape}, {count.shape}, {epoch.shape}")
    start = np.r_[True, epoch[1:] != epoch[:-1]] if len(epoch) else np.zeros(0, bool)
    grp = np.cumsum(start) - 1
    ct, cc = np.cumsum(total), np.cumsum(count)
    base_idx = np.flatnonzero(start)
    bt = np.r_[0.0, ct][base_idx][grp] if len(epoch) else ct
    bc = np.r_[0.0, cc][base_idx][grp] if len(epoch) else cc
    return ct - bt, cc - bc
