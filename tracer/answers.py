"""Answer "Keras says RMSE 20.07, my spreadsheet says 18.77" in the learner's own numbers.

Why: the S2 learner typed a number, not a step. :func:`answer_metric` computes every
value the usual hand computations give at every recorded step and every epoch end
(what the framework logs: the running value with the weights before each update; the
batch alone; the mean of the batch values; all data rows with the weights before or
after the update; the end-of-epoch ``val_*`` value), names where the user's value
matches (or says plainly that it matches nowhere, with the closest), and opens with one
sentence in the learner's numbers: which weights the framework used and which the
learner's sheet used. The sentence is built in :mod:`tracer.answer_text`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from .errors import SteptraceError, TraceInputError
from .metric_names import MetricName, resolve_metric

if TYPE_CHECKING:
    from .checker.report import CheckReport
    from .trace import Trace

__all__ = ["answer_metric", "Candidate", "MetricAnswer", "tolerance"]

#: candidate kinds, in the order a tie is named (the first is the answer)
KINDS = ("logged", "full_after", "val", "batch", "mean_of_batches", "full_before")


@dataclass
class Candidate:
    """One computation at one step: ``kind`` (see :data:`KINDS`), ``step``, ``epoch``,
    ``batch``, ``value``."""

    kind: str
    step: int
    epoch: int
    batch: int
    value: float


@dataclass
class MetricAnswer:
    """Everything computed for one metric: the candidates at every step and epoch end, the
    value logged after each step (``logged``: step -> value) and at each epoch end
    (``epoch_logged``, ``val_logged``: epoch -> value), the matches of the user's value."""

    metric: MetricName
    value: float | None
    candidates: list
    logged: dict
    epoch_logged: dict
    val_logged: dict
    n_rows: int
    framework: str
    matches: list = field(default_factory=list)
    notes: list = field(default_factory=list)
    trace: object = None
    program: object = None

    def __str__(self) -> str:
        from .answer_text import render
        return render(self)


def tolerance(value: float) -> float:
    """Agreement to the digits the user typed (half a unit in the last one), at least float32's."""
    text = repr(float(value))
    decimals = 0
    if "e" not in text and "." in text:
        decimals = len(text.split(".")[1].rstrip("0"))
    elif "e" in text:
        mant, exp = text.split("e")
        decimals = max(0, len(mant.split(".")[1]) if "." in mant else 0) - int(exp)
    return max(0.5 * 10.0 ** (-decimals) * (1 + 1e-9), 2e-6 * abs(value))


def _full_values(trace, program, mname: MetricName, which: str):
    """``{step: value}`` of the metric on all data rows with the parameters ``which``."""
    from .checker.recompute import full_data_series
    from .math.metrics import get_metric
    fd = full_data_series(trace, which, program)
    if mname.kind == "loss":
        if fd.loss is None:
            raise SteptraceError("the trace's loss is not known")
        return dict(zip(fd.steps.tolist(), fd.loss.tolist()))
    if fd.prediction is None:
        raise SteptraceError("the program names no prediction")
    yt = np.asarray(trace.arrays().targets, dtype=np.float64)
    yt = np.broadcast_to(yt[None], fd.prediction.shape[:2] + (yt.shape[1],))
    metric = get_metric(mname.spec)
    total, count = metric.batch_terms(fd.prediction, yt)
    return dict(zip(fd.steps.tolist(), metric.result(total, count).tolist()))


def _epoch_col(trace, name: str) -> dict:
    tab = trace.epochs
    col = "logged_" + name
    if col not in tab.columns or "epoch" not in tab.columns:
        return {}
    return {int(e): float(v) for e, v in zip(tab["epoch"], tab[col]) if np.isfinite(v)}


def _candidates(trace, series, full_before, full_after) -> list:
    out = []
    steps_tab = trace.steps.set_index("step")
    sums = {}
    for k, (s, e) in enumerate(zip(series.steps.tolist(), series.epochs.tolist())):
        b = int(steps_tab.loc[s, "batch"])
        sums.setdefault(e, []).append(float(series.batch_value[k]))
        out.append(Candidate("logged", s, e, b, float(series.running[k])))
        out.append(Candidate("batch", s, e, b, float(series.batch_value[k])))
        if len(sums[e]) > 1:
            out.append(Candidate("mean_of_batches", s, e, b, float(np.mean(sums[e]))))
    for kind, values in (("full_before", full_before), ("full_after", full_after)):
        for s, v in values.items():
            if s in steps_tab.index:
                row = steps_tab.loc[s]
                out.append(Candidate(kind, int(s), int(row["epoch"]), int(row["batch"]), float(v)))
    ends = trace.steps.groupby("epoch")["step"].max()
    for e, s in ends.items():
        if int(s) in full_after:
            out.append(Candidate("val", int(s), int(e), int(steps_tab.loc[s, "batch"]), float(full_after[int(s)])))
    return out


def answer_metric(trace: Trace, metric: str, value: float | None = None,
                  report: CheckReport | None = None) -> MetricAnswer:
    """Search every step and epoch end for ``value`` of ``metric`` (see the module docstring)."""
    from .checker import check
    from .checker.logged import metric_series
    from .checker.recompute import program_of

    if value is not None:
        try:
            value = float(value)
        except (TypeError, ValueError):
            raise TraceInputError(f"value: expected a number, got {value!r}") from None
        if math.isnan(value):
            raise TraceInputError("value: expected a number, got NaN")
    mname = resolve_metric(trace, metric)
    report = report or check(trace)
    program = program_of(trace, report)
    spec = "loss" if mname.kind == "loss" else mname.spec
    series = metric_series(trace, spec, report.context.get("loss_by_step") or None)
    if series is None:
        raise TraceInputError(
            f"metric: {mname.label!r} cannot be recomputed from this trace (it needs every batch of an epoch "
            "recorded with predictions: capture='full', every=1, and a described loss/metric)")
    notes = list(series.notes)
    full = {}
    for which in ("before", "after"):
        try:
            full[which] = _full_values(trace, program, mname, which)
        except SteptraceError as exc:
            full[which] = {}
            notes.append(f"all data rows, weights {which} the update: not computed ({exc})")
    framework = {"keras": "Keras", "torch": "PyTorch"}.get(trace.meta.get("framework"), "the run")
    ans = MetricAnswer(mname, value, _candidates(trace, series, full["before"], full["after"]),
                       {int(s): float(v) for s, v in zip(series.steps, series.actual) if np.isfinite(v)},
                       _epoch_col(trace, mname.name), _epoch_col(trace, "val_" + mname.name),
                       int(trace.arrays().inputs.shape[0]) if trace.arrays().inputs is not None else 0,
                       framework, notes=notes, trace=trace, program=program)
    if value is not None:
        tol = tolerance(value)
        hits = [c for c in ans.candidates if abs(c.value - value) <= tol]
        order = KINDS if ans.logged or ans.epoch_logged else KINDS[1:3] + ("batch", "logged") + KINDS[4:]
        ans.matches = sorted(hits, key=lambda c: (order.index(c.kind), c.step))
    return ans
