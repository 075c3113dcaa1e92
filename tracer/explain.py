"""``explain(trace, step=k)``: the hand derivation of one step, numbers substituted.

The text is printed from the same sympy expressions the checker evaluates (the
loss, its derivative from ``sympy.diff``, the optimizer's update equations), so
what a learner reads is exactly what was checked.
"""
from __future__ import annotations

import numpy as np

from .checker import check
from .checker.forward import backward, forward
from .errors import TraceInputError
from .math import printing
from .math.losses import get_loss


def _fmt(a, limit: int = 6) -> str:
    a = np.asarray(a, dtype=np.float64)
    if a.size == 1:
        return f"{a.reshape(-1)[0]:.10g}"
    flat = a.reshape(-1)
    text = ", ".join(f"{v:.8g}" for v in flat[:limit])
    more = f", ... ({a.size} values)" if a.size > limit else ""
    return f"[{text}{more}]" + (f" shape {a.shape}" if a.ndim > 1 else "")


def _model_text(model) -> list[str]:
    lines = []
    a = "x"
    for i, layer in enumerate(model["layers"]):
        w = layer["weight"] + (".T" if layer.get("transpose") else "")
        z = f"{a} @ {w}" + (f" + {layer['bias']}" if layer.get("bias") else "")
        act = layer.get("activation") or "linear"
        out = "y_pred" if i == len(model["layers"]) - 1 else f"h{i + 1}"
        lines.append(f"    {out} = {z}" if act == "linear" else f"    {out} = {act}({z})")
        a = out
    return lines


def explain(trace, step: int = 1, *, report=None, max_rows: int = 5, metric: str | None = None,
            value: float | None = None) -> str:
    """Return the derivation of global step ``step`` (from 1) as text.

    With ``metric`` (a logged metric name) it returns the reconciliation of that
    logged value instead (see :mod:`tracer.reconcile`).
    """
    if metric is not None:
        from .reconcile import reconcile_metric
        return str(reconcile_metric(trace, metric, step, value))
    steps = trace.steps
    if not isinstance(step, (int, np.integer)) or step < 1:
        raise TraceInputError(f"step: expected a step number from 1, got {step!r}")
    row = steps[steps["step"] == step]
    if not len(row):
        raise TraceInputError(
            f"step: the trace has steps {int(steps['step'].min()) if len(steps) else '-'}.."
            f"{int(steps['step'].max()) if len(steps) else '-'}, got {step}")
    row = row.iloc[0]
    report = report or check(trace)
    ctx = report.context
    out = [f"Step {step} (epoch {int(row['epoch'])}, batch {int(row['batch'])}), "
           f"batch of {int(row['batch_size']) if np.isfinite(row['batch_size']) else '?'} rows"]
    arrays = trace.arrays()
    sel = arrays.sample_step == step
    rows = arrays.sample_row[sel]
    if rows.size:
        shown = ", ".join(str(r) for r in rows[:12]) + (", ..." if rows.size > 12 else "")
        out.append(f"  rows used: {shown}")
    model = ctx.get("model")
    pos = np.nonzero(arrays.param_step == step)[0]
    if model is None or not pos.size or arrays.inputs is None or not rows.size:
        out.append("  (no model, parameters or rows recorded for this step: nothing to derive)")
        return "\n".join(out + _verdict(report, step))
    i = int(pos[0])
    params = {n: trace.param_values(n, "before")[i:i + 1].astype(np.float64) for n in arrays.params}
    out.append("Model (parameters before the update):")
    out += _model_text(model)
    for n, v in params.items():
        out.append(f"    {n} = {_fmt(v[0])}")
    x = arrays.inputs[rows][None].astype(np.float64)
    y = arrays.targets[rows][None].astype(np.float64)
    y_hat, cache = forward(model, params, x)
    pred = arrays.sample_pred[sel][None] if arrays.sample_pred is not None else None
    out.append(f"Predictions (first {min(max_rows, rows.size)} of {rows.size} rows):")
    for r in range(min(max_rows, rows.size)):
        rec = "" if pred is None else f"   recorded {_fmt(pred[0, r])}"
        out.append(f"    row {rows[r]}: x = {_fmt(x[0, r])}, y = {_fmt(y[0, r])}, y_pred = {_fmt(y_hat[0, r])}{rec}")
    spec = ctx.get("loss")
    if spec is None:
        out.append("Loss: not declared and not identified: the derivation stops here.")
        return "\n".join(out + _verdict(report, step))
    loss = get_loss(spec)
    expr, _ = loss.elementwise
    value = loss.value(y_hat, y)[0]
    out.append(f"Loss: {loss.describe()}")
    out.append(f"    per element: l = {printing.text(expr)}")
    out.append(f"    L = {value:.10g}   recorded {float(row['loss']):.10g}")
    out.append(f"Gradient (sympy.diff): dl/dy_pred = {printing.text(loss.derivative)}, "
               f"then divided as the loss is")
    d_out = loss.grad(y_hat, y)
    grads = backward(model, params, cache, d_out)
    for n, g in grads.items():
        recorded = arrays.params[n]["grad"][i]
        rec = f"   recorded {_fmt(recorded)}" if np.isfinite(recorded).all() else "   (not recorded)"
        out.append(f"    dL/d{n} = {_fmt(g[0])}{rec}")
    rules = ctx.get("rules") or {}
    if rules:
        rule = next(iter(rules.values()))
        out.append(f"Update: {rule.describe()}")
        try:
            for name, eq in rule.equations():
                out.append(f"    {name} = {printing.text(eq)}")
        except Exception:  # an equation the printer cannot render is not worth failing over
            pass
        for n, p in arrays.params.items():
            before, after = p["before"][i].astype(np.float64), p["after"][i].astype(np.float64)
            g = p["grad"][i] if np.isfinite(p["grad"][i]).all() else grads[n][0].reshape(-1)
            exp_after = before - rules[n].lr * g if rules[n].convention == "plain" else None
            line = f"    {n}: {_fmt(before)} -> {_fmt(after)} (recorded)"
            if exp_after is not None:
                line += f"; by hand {_fmt(before)} - {rules[n].lr:g} * {_fmt(g)} = {_fmt(exp_after)}"
            out.append(line)
    return "\n".join(out + _verdict(report, step))


def _verdict(report, step) -> list[str]:
    t = report.table
    here = t[t["step"] == step] if len(t) else t
    if not len(here):
        return ["Check: nothing checked at this step."]
    bad = here[~here["passed"]]
    if not len(bad):
        return [f"Check: all {len(here)} checks of this step passed."]
    from .checker.report import describe_row
    return [f"Check: {len(bad)} of {len(here)} checks FAILED at this step:"] + \
        ["    " + describe_row(r) for r in bad.head(8).to_dict("records")]
