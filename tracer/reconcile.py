"""Metric reconciliation: how the framework got a logged number, and what you computed instead.

Why: the most common "my numbers don't match Keras" question (S2) is not a bug in
anyone's arithmetic; the two numbers measure different things. Keras logs a
running value over the epoch so far with the weights *before* each update; a
learner typically recomputes the metric on the current batch alone, averages the
per-batch values, or evaluates the whole data set with the *trained* weights.
:func:`reconcile_metric` computes each of those candidates for one logged value
and, given the user's number, names the one it equals.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .errors import SteptraceError, TraceInputError

__all__ = ["reconcile_metric", "Reconciliation", "CANDIDATES"]

LOGGED = "logged by Keras (running over the epoch so far, weights before the update)"
BATCH = "current batch only, weights before the update"
MEAN_OF_BATCHES = "mean of per-batch values so far"
FULL_BEFORE = "full data, weights before the update"
FULL_AFTER = "full data, weights after the update"
CANDIDATES = (LOGGED, BATCH, MEAN_OF_BATCHES, FULL_BEFORE, FULL_AFTER)


@dataclass
class Reconciliation:
    """The candidates for one logged value (``candidates``: name, value, matches) and the
    name of the one equal to the reference value (``match``, None if none is)."""

    metric: str
    step: int
    epoch: int
    batch: int
    logged: float
    value: float | None
    candidates: pd.DataFrame
    match: str | None
    describe: str = ""
    breakdown: pd.DataFrame | None = None
    notes: list = field(default_factory=list)

    def __str__(self) -> str:
        lines = [f"{self.metric} at step {self.step} (epoch {self.epoch}, batch {self.batch}): "
                 f"Keras logged {_fmt(self.logged)}"]
        if self.describe:
            lines.append(f"How Keras got it: {self.describe}, with the weights before each update, "
                         f"reset at the start of each epoch.")
        if self.breakdown is not None and len(self.breakdown):
            lines.append("Batches of this epoch so far:")
            lines += ["  " + ln for ln in self.breakdown.to_string(index=False).splitlines()]
        lines.append("Candidates:")
        width = max(len(n) for n in self.candidates["name"])
        for name, val, ok in self.candidates.itertuples(index=False):
            mark = "  <= equals " + ("your value" if self.value is not None else "the logged value") if ok else ""
            lines.append(f"  {name:<{width}}  {_fmt(val)}{mark}")
        if self.value is not None:
            if self.match:
                lines.append(f"Your value {self.value!r} is the {self.match!r} value.")
                others = [n for n, ok in zip(self.candidates["name"], self.candidates["matches"])
                          if ok and n != self.match]
                if others:
                    lines.append("Equal here as well (these coincide at this step): " + "; ".join(others) + ".")
                if self.match != LOGGED:
                    lines.append(f"Keras's {_fmt(self.logged)} is the {LOGGED!r} value: the two measure "
                                 "different things, neither is wrong.")
            else:
                lines.append(f"Your value {self.value!r} matches none of the candidates.")
        for n in self.notes:
            lines.append(f"Note: {n}")
        return "\n".join(lines)


def _fmt(v) -> str:
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.8g}"


def _tolerance(value: float) -> float:
    """Agreement to the digits the user typed (0.5 in the last one), at least float32 precision."""
    text = repr(float(value))
    decimals = 0
    if "e" not in text and "." in text:
        decimals = len(text.split(".")[1].rstrip("0"))
    elif "e" in text:
        mant, exp = text.split("e")
        decimals = max(0, len(mant.split(".")[1]) if "." in mant else 0) - int(exp)
    return max(0.5 * 10.0 ** (-decimals) * (1 + 1e-9), 2e-6 * abs(value))


def _full_data_value(trace, name: str, spec, step: int, which: str) -> float:
    """The quantity on every training row with the parameters before or after ``step``,
    computed by the step program the checker uses."""
    from .checker.recompute import evaluate_full_data
    ev = evaluate_full_data(trace, step, which)
    if name == "loss":
        if not ev.program.has_loss:
            raise SteptraceError("the trace's loss is not known")
        return float(ev.loss[0])
    preds = ev.prediction
    if preds is None:
        raise SteptraceError("the program names no prediction")
    yt = np.asarray(trace.arrays().targets, dtype=np.float64)
    preds = np.asarray(preds, dtype=np.float64).reshape(1, yt.shape[0], -1)
    from .math.metrics import get_metric
    metric = get_metric(spec)
    total, count = metric.batch_terms(preds, yt[None])
    return float(metric.result(total, count)[0])


def reconcile_metric(trace, metric: str, step: int, value: float | None = None) -> Reconciliation:
    """Explain the value logged as ``metric`` after step ``step`` (1-based) and compare the
    values a user is likely to have computed instead; with ``value``, name the one it equals.
    """
    from .checker.logged import logged_values, metric_spec

    if not isinstance(metric, str) or not metric:
        raise TraceInputError(f"metric: expected a logged name such as 'loss', got {metric!r}")
    try:
        step = int(step)
    except (TypeError, ValueError):
        raise TraceInputError(f"step: expected a step number (from 1), got {step!r}") from None
    if value is not None:
        try:
            value = float(value)
        except (TypeError, ValueError):
            raise TraceInputError(f"value: expected a number, got {value!r}") from None
    spec = None
    name = "loss" if metric in ("loss", "logged_loss") else metric.removeprefix("logged_")
    if name != "loss":
        spec = metric_spec(trace.meta, name)
        if spec is None:
            known = ["loss"] + [m.get("name") for m in trace.meta.get("metrics") or []]
            raise TraceInputError(f"metric: expected one of {known}, got {metric!r}")
        name = spec["name"]
    series = logged_values(trace).get(name)
    if series is None:
        raise TraceInputError(
            f"metric: {metric!r} cannot be recomputed from this trace (it needs every batch of the epoch "
            "recorded with predictions: capture='full', every=1, and a described loss/metric)")
    hit = np.flatnonzero(series.steps == step)
    if not hit.size:
        raise TraceInputError(f"step: expected one of the recomputable steps "
                              f"{int(series.steps.min())}..{int(series.steps.max())}, got {step}")
    k = int(hit[0])
    epoch = int(series.epochs[k])
    in_epoch = np.flatnonzero((series.epochs == epoch) & (series.steps <= step))
    steps_tab = trace.steps
    srow = steps_tab.loc[steps_tab["step"] == step].iloc[0]
    batch = int(srow["batch"])
    logged = float(series.actual[k])

    notes = list(series.notes)
    values = {LOGGED: float(series.running[k]), BATCH: float(series.batch_value[k]),
              MEAN_OF_BATCHES: float(np.mean(series.batch_value[in_epoch]))}
    for label, which in ((FULL_BEFORE, "before"), (FULL_AFTER, "after")):
        try:
            values[label] = _full_data_value(trace, name, spec, step, which)
        except SteptraceError as exc:
            values[label] = float("nan")
            notes.append(f"{label}: not computed ({exc})")

    reference = value if value is not None else logged
    names = list(CANDIDATES)
    vals = np.array([values[n] for n in names])
    matches = np.zeros(len(names), dtype=bool)
    match = None
    if reference is not None and not math.isnan(reference):
        tol = _tolerance(reference) if value is not None else 1e-5 * max(1.0, abs(reference))
        diff = np.abs(vals - reference)
        matches = np.nan_to_num(diff, nan=np.inf) <= tol
        if matches.any():               # several can be equal (one batch per epoch): the first wins
            match = names[int(np.flatnonzero(matches)[0])]
    candidates = pd.DataFrame({"name": names, "value": vals, "matches": matches})
    breakdown = pd.DataFrame({
        "step": series.steps[in_epoch], "batch rows": series.batch_size[in_epoch].astype(int),
        "batch value": series.batch_value[in_epoch], "running value": series.running[in_epoch],
        "logged": series.actual[in_epoch]})
    return Reconciliation(metric=name, step=step, epoch=epoch, batch=batch, logged=logged, value=value,
                          candidates=candidates, match=match, describe=series.describe,
                          breakdown=breakdown, notes=notes)
