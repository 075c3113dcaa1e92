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
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from .answers import tolerance as _tolerance
from .display import num
from .errors import SteptraceError, TraceInputError
from .metric_names import resolve_metric

if TYPE_CHECKING:
    from .checker.report import CheckReport
    from .trace import Trace

__all__ = ["reconcile_metric", "Reconciliation", "CANDIDATES"]

LOGGED = "running over the epoch so far, weights before each update (recomputed: what Keras logs)"
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
    framework: str = "Keras"

    def __str__(self) -> str:
        said = (f"{self.framework} logged {_fmt(self.logged)}" if not math.isnan(self.logged) else
                f"not logged by the run (the candidates below are steptrace's recomputations)")
        lines = [f"{self.metric} at step {self.step} (epoch {self.epoch}, batch {self.batch}): {said}"]
        if self.describe:
            lines.append(f"How Keras computes it: {self.describe}, with the weights before each update, "
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
                if self.match != LOGGED and not math.isnan(self.logged):
                    lines.append(f"{self.framework}'s {_fmt(self.logged)} is the {LOGGED!r} value: the two "
                                 "measure different things, neither is wrong.")
            else:
                lines.append(f"Your value {self.value!r} matches none of the candidates.")
        for n in self.notes:
            lines.append(f"Note: {n}")
        return "\n".join(lines)


def _fmt(v) -> str:
    return num(v, 8)


def _program(trace, report, need_loss: bool):
    """The checker's program (with the loss it identified, which needs a check run)."""
    from .checker.recompute import program_of
    program = program_of(trace, report)
    if report is None and need_loss and (program is None or not program.has_loss):
        from .checker import check
        program = program_of(trace, check(trace))
    return program


def _full_data_value(trace, name: str, spec, step: int, which: str, program) -> float:
    """The quantity on every training row with the parameters before or after ``step``,
    computed by the step program the checker uses."""
    from .checker.recompute import evaluate_full_data
    ev = evaluate_full_data(trace, step, which, program)
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


def _parse(metric, step, value):
    """``(step, value)`` as numbers, or TraceInputError naming the argument."""
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
    return step, value


def _matches(values: dict, reference, user_value: bool):
    """``(matches mask, first match)`` of the candidates against ``reference``."""
    names = list(CANDIDATES)
    vals = np.array([values[n] for n in names])
    matches = np.zeros(len(names), dtype=bool)
    if reference is None or math.isnan(reference):
        return vals, matches, None
    tol = _tolerance(reference) if user_value else 1e-5 * max(1.0, abs(reference))
    matches = np.nan_to_num(np.abs(vals - reference), nan=np.inf) <= tol
    # several can be equal (one batch per epoch): the first wins
    return vals, matches, (names[int(np.flatnonzero(matches)[0])] if matches.any() else None)


def reconcile_metric(trace: Trace, metric: str, step: int, value: float | None = None,
                     report: CheckReport | None = None) -> Reconciliation:
    """Explain the value logged as ``metric`` after step ``step`` (1-based) and compare the
    values a user is likely to have computed instead; with ``value``, name the one it equals.
    """
    from .checker.logged import metric_series

    step, value = _parse(metric, step, value)
    mname = resolve_metric(trace, metric)
    if mname.val:
        raise TraceInputError(f"metric: {metric!r} is logged at the end of an epoch, not after a step; "
                              "ask without --step (steptrace explain TRACE --metric NAME)")
    name, spec = mname.name, mname.spec
    series = metric_series(trace, "loss" if mname.kind == "loss" else spec)
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
    program = _program(trace, report, name == "loss")
    for label, which in ((FULL_BEFORE, "before"), (FULL_AFTER, "after")):
        try:
            values[label] = _full_data_value(trace, name, spec, step, which, program)
        except SteptraceError as exc:
            values[label] = float("nan")
            notes.append(f"{label}: not computed ({exc})")

    vals, matches, match = _matches(values, value if value is not None else logged, value is not None)
    candidates = pd.DataFrame({"name": list(CANDIDATES), "value": vals, "matches": matches})
    breakdown = pd.DataFrame({
        "step": series.steps[in_epoch], "batch rows": series.batch_size[in_epoch].astype(int),
        "batch value": series.batch_value[in_epoch], "running value": series.running[in_epoch],
        "logged": series.actual[in_epoch]})
    framework = {"keras": "Keras", "torch": "PyTorch"}.get(trace.meta.get("framework"), "the run")
    return Reconciliation(metric=name, step=step, framework=framework, epoch=epoch, batch=batch, logged=logged,
                          value=value,
                          candidates=candidates, match=match, describe=series.describe,
                          breakdown=breakdown, notes=notes)
