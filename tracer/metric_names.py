"""Metric names as people type them: ``RMSE``, ``mse``, ``acc``, ``val_root_mean_squared_error``.

Why: Keras logs ``root_mean_squared_error``; a learner asks about "RMSE", "the loss" or
the ``val_...`` value Keras printed at the end of an epoch. :func:`resolve_metric` maps
what was typed (any case, an alias, a ``val_`` or ``logged_`` prefix) to what the trace
holds: the logged name, whether it is a validation value, and the kind of computation
the name promises (``rmse``, ``mse``, ``mae``, an accuracy, or ``loss``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from .errors import TraceInputError

if TYPE_CHECKING:
    from .trace import Trace

__all__ = ["MetricName", "resolve_metric", "KIND_OF_NAME", "LABEL"]

#: words people use -> the computation they mean
KIND_OF_NAME = {
    "rmse": "rmse", "root_mean_squared_error": "rmse", "rootmeansquarederror": "rmse",
    "mse": "mse", "mean_squared_error": "mse", "meansquarederror": "mse",
    "mae": "mae", "mean_absolute_error": "mae", "meanabsoluteerror": "mae",
    "acc": "accuracy", "accuracy": "accuracy", "binary_accuracy": "binary_accuracy",
    "categorical_accuracy": "categorical_accuracy", "sparse_categorical_accuracy": "sparse_categorical_accuracy",
    "loss": "loss",
}
#: how each kind is called in sentences
LABEL = {"rmse": "RMSE", "mse": "MSE", "mae": "MAE", "loss": "loss", "accuracy": "accuracy",
         "binary_accuracy": "binary accuracy", "categorical_accuracy": "categorical accuracy",
         "sparse_categorical_accuracy": "sparse categorical accuracy"}
#: loss names (meta["loss"]["name"] or the identified text) that are the mean squared error
_MSE_LOSSES = {"mse", "mean_squared_error", "meansquarederror", "mean squared error"}


@dataclass
class MetricName:
    """What a typed name refers to. ``name``: the logged name without ``val_`` (``loss`` or a
    ``meta["metrics"]`` name, or the kind itself when the run logged no such metric);
    ``kind``: the computation; ``val``: the end-of-epoch validation value; ``spec``: the
    ``meta["metrics"]`` entry (None for the loss or an unlogged kind); ``logged``: whether
    the run logged it (per batch or per epoch)."""

    typed: str
    name: str
    kind: str
    val: bool
    spec: dict | None
    logged: bool

    @property
    def logged_name(self) -> str:
        """The column name without ``logged_``: ``val_root_mean_squared_error``."""
        return ("val_" if self.val else "") + self.name

    @property
    def label(self) -> str:
        """``RMSE``, ``loss``, ``val RMSE``."""
        return ("val " if self.val else "") + LABEL.get(self.kind, self.name)


def _key(text: str) -> str:
    return text.strip().lower().replace("-", "_").replace(" ", "_")


def _loss_is_mse(trace) -> bool:
    spec = trace.meta.get("loss") or {}
    names = {str(spec.get("name", "")).lower(), str(spec.get("keras_name", "")).lower()}
    return bool(names & _MSE_LOSSES) and not spec.get("divide_by")


def _logged_columns(trace) -> set:
    cols = set()
    for table in (trace.steps, trace.epochs):
        cols |= {c[len("logged_"):] for c in table.columns if c.startswith("logged_")}
    return cols


def resolve_metric(trace: Trace, typed: str) -> MetricName:
    """The metric ``typed`` refers to in ``trace`` (see the module docstring).

    A name the run logged wins (``meta["metrics"]`` by name, case-insensitively, then by
    kind); ``mse`` is the loss when the loss is the mean squared error and no MSE metric
    was logged; ``rmse``/``mse``/``mae`` that were not logged are still recomputed from
    the predictions. Anything else raises :class:`TraceInputError` listing what exists.
    """
    if not isinstance(typed, str) or not typed.strip():
        raise TraceInputError(f"metric: expected a name such as 'loss' or 'rmse', got {typed!r}")
    key = _key(typed).removeprefix("logged_")
    val = key.startswith("val_")
    base = key.removeprefix("val_")
    logged = {c.lower(): c for c in _logged_columns(trace)}
    metrics = trace.meta.get("metrics") or []
    kind = KIND_OF_NAME.get(base)
    if base == "loss":
        return MetricName(typed, "loss", "loss", val, None, (("val_" if val else "") + "loss") in logged)
    for m in metrics:                                   # a logged metric by its own name
        if str(m.get("name", "")).lower() == base:
            mk = m.get("kind") if m.get("kind") not in (None, "unsupported") else KIND_OF_NAME.get(base, "unsupported")
            return MetricName(typed, m["name"], mk, val, m, _is_logged(logged, m["name"], val))
    if kind is not None:
        for m in metrics:                               # by what it computes (rmse -> root_mean_squared_error)
            if m.get("kind") == kind or (kind == "accuracy" and str(m.get("kind", "")).endswith("accuracy")):
                return MetricName(typed, m["name"], m["kind"], val, m, _is_logged(logged, m["name"], val))
        if kind == "mse" and _loss_is_mse(trace):
            return MetricName(typed, "loss", "loss", val, None, (("val_" if val else "") + "loss") in logged)
        if kind in ("rmse", "mse", "mae"):
            return MetricName(typed, base, kind, val, {"name": base, "kind": kind}, False)
    known = sorted({"loss", "rmse", "mse", "mae"} | {m.get("name") for m in metrics if m.get("name")}
                   | {c for c in _logged_columns(trace)})
    raise TraceInputError(f"metric: expected one of {known} (any case; 'val_' for the validation values), "
                          f"got {typed!r}")


def _is_logged(logged: dict, name: str, val: bool) -> bool:
    return (("val_" if val else "") + name).lower() in logged
