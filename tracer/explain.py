"""``explain(trace, step=k)``: the hand derivation of one step, numbers filled in.

The text is the step program the checker evaluated, line by line, with each value
of this step beside it; the elementwise formulas and their ``sympy.diff``
derivatives are printed from the same sympy expressions the engine lambdifies; the
update is the optimizer's ordered equations. What a learner reads is exactly what
was checked. A step the program cannot derive (an unsupported model) still shows
everything recorded: rows, parameters, gradients and the update check.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .checker import check
from .display import compact_rows, count, num, num_list
from .errors import SteptraceError, TraceInputError
from .explain_update import update_lines
from .math import printing
from .program import get_op
from .program.elementwise import Elementwise

if TYPE_CHECKING:
    from .checker.report import CheckReport
    from .trace import Trace

__all__ = ["explain"]


def _fmt(a, limit: int = 6) -> str:
    """A value for reading: 7 significant digits (float32's precision), the first few of many."""
    a = np.asarray(a, dtype=np.float64)
    if a.size == 1:
        return num(a.reshape(-1)[0], 7)
    return num_list(a.reshape(-1), 7, limit) + (f" shape {a.shape}" if a.ndim > 1 else "")


def explain(trace: Trace, step: int | None = 1, *, report: CheckReport | None = None, max_rows: int = 5,
            metric: str | None = None, value: float | None = None) -> str:
    """Return the derivation of global step ``step`` (from 1) as text.

    With ``metric`` (a logged name, any case, an alias such as ``rmse`` or ``mse``, or
    ``val_<name>``) it answers "where does this number come from" instead: with
    ``step=None`` every step and epoch end is searched for ``value``
    (:mod:`tracer.answers`); with a step, that step's candidates (:mod:`tracer.reconcile`).
    ``value`` without ``metric`` is an error.
    """
    if metric is None and value is not None:
        raise TraceInputError("value: give the metric it is a value of (metric='rmse', or --metric RMSE)")
    if metric is not None:
        if step is None:
            from .answers import answer_metric
            return str(answer_metric(trace, metric, value, report=report))
        return _with_sentence(trace, metric, step, value, report)
    step = 1 if step is None else step
    steps = trace.steps
    if isinstance(step, bool) or not isinstance(step, (int, np.integer)) or step < 1:
        raise TraceInputError(f"step: expected a step number from 1, got {step!r}")
    row = steps[steps["step"] == step]
    if not len(row):
        raise TraceInputError(
            f"step: the trace has steps {int(steps['step'].min()) if len(steps) else '-'}.."
            f"{int(steps['step'].max()) if len(steps) else '-'}, got {step}")
    row = row.iloc[0]
    report = report or check(trace)
    arrays = trace.arrays()
    bs = row.get("batch_size", np.nan)
    out = [f"Step {step} (epoch {int(row['epoch'])}, batch {int(row['batch'])}), "
           f"batch of {count(int(bs), 'row') if np.isfinite(bs) else '? rows'}"]
    rows = arrays.sample_row[arrays.sample_step == step]
    if rows.size and (rows >= 0).all():
        out.append(f"  rows used: {compact_rows(rows)}")
    pos = np.flatnonzero(arrays.param_step == step)
    program = report.context.get("program")
    ev = None
    if program is not None and pos.size:
        from .checker.recompute import evaluate_step
        try:
            ev = evaluate_step(trace, step, program)
        except SteptraceError as exc:
            out.append(f"  (the step program cannot be evaluated at this step: {exc})")
    if ev is None:
        out += _recorded_only(trace, report, step, pos)
        return "\n".join(out + update_lines(trace, report, pos) + _verdict(report, step))
    out += _program_lines(ev, arrays, step, row, max_rows, _loss_text(trace, report))
    out += _gradients(ev, arrays, int(pos[0]))
    grads = ev.gradients() if ev.program.has_loss else {}
    return "\n".join(out + update_lines(trace, report, pos, grads) + _verdict(report, step))


def _loss_text(trace, report) -> str | None:
    if report.identified.get("loss") and "not identified" not in report.identified["loss"]:
        return report.identified["loss"] + " (identified)"
    spec = trace.meta.get("loss")
    if isinstance(spec, dict) and spec.get("name"):
        red = spec.get("reduction")
        return spec["name"] + (f", reduction {red}" if red else "")
    return None


def _recorded_only(trace, report, step, pos):
    reasons = [r for r in report.cannot_check if r.startswith(("model", "program", "loss"))]
    lines = ["Derivation: not available for this step" + (f" ({'; '.join(reasons)})" if reasons else "") + "."]
    if not pos.size:
        return lines + ["  (no parameters were recorded for this step)"]
    arrays = trace.arrays()
    i = int(pos[0])
    lines.append("Recorded parameters (before the update) and gradients:")
    for n, p in arrays.params.items():
        g = p.grad[i]
        grad = _fmt(g) if np.isfinite(g).all() else "(not recorded)"
        lines.append(f"    {n} = {_fmt(p['before'][i])}   dL/d{n} = {grad}")
    return lines


def _program_lines(ev, arrays, step, row, max_rows, loss_text=None):
    program = ev.program
    lines = ["Program (parameters before the update; values of this step):"]
    shown_groups = set()
    for n in program.primitive_nodes:
        if n.name not in ev.values:
            continue
        label = n.group or n.name
        text = get_op(n.op).text([a if isinstance(a, str) else f"{a:g}" for a in n.args], n.attrs)
        lines.append(f"    {n.name} = {text}  ->  {_fmt(ev.values[n.name][0])}")
        shown_groups.add(label)
    for p in program.params:
        lines.append(f"    {p} = {_fmt(ev.values[p][0])}")
    formulas = _formulas(program)
    if formulas:
        lines.append("Elementwise formulas (derivatives by sympy.diff):")
        lines += formulas
    pred = ev.prediction
    rows = arrays.sample_row[arrays.sample_step == step]
    rec = arrays.sample_pred[arrays.sample_step == step] if arrays.sample_pred is not None else None
    if pred is not None and rows.size:
        p = np.asarray(pred[0], dtype=np.float64).reshape(rows.size, -1) if pred[0].size % rows.size == 0 else None
        if p is not None:
            lines.append(f"Predictions (first {min(max_rows, rows.size)} of {count(rows.size, 'row')}):")
            for r in range(min(max_rows, rows.size)):
                x = arrays.inputs[rows[r]] if arrays.inputs is not None else None
                y = arrays.targets[rows[r]] if arrays.targets is not None else None
                recd = "" if rec is None else f"   recorded {_fmt(rec[r])}"
                lines.append(f"    row {rows[r]}: x = {_fmt(x)}, y = {_fmt(y)}, y_pred = {_fmt(p[r])}{recd}")
    if program.has_loss:
        recorded = row.get("loss", np.nan)
        if loss_text:
            lines.append(f"Loss: {loss_text}")
        lines.append(f"    L = {program.outputs['loss']} = {_fmt(ev.loss[0])}   recorded {_fmt(recorded)}")
    else:
        lines.append("Loss: not declared and not identified: the derivation stops here.")
    return lines


def _formulas(program) -> list[str]:
    seen, out = set(), []
    for n in program.primitive_nodes:
        op = get_op(n.op)
        key = (n.op, tuple(sorted(n.attrs.items())))
        if not isinstance(op, Elementwise) or key in seen or n.op in ("add", "sub", "mul", "div", "neg",
                                                                       "identity", "cast"):
            continue
        seen.add(key)
        e = op.expr(n.attrs)
        args = ", ".join(s.name for s in op.symbols)
        line = f"    {n.op}({args}) = {printing.text(e)}"
        if op.differentiable:
            d = op.derivative(op.differentiable[0], n.attrs)
            line += f";  d/d{op.symbols[op.differentiable[0]].name} = {printing.text(d)}"
        out.append(line)
    return out


def _gradients(ev, arrays, i):
    if not ev.program.has_loss:
        return []
    lines = ["Gradients (reverse pass through the program):"]
    for n, g in ev.gradients().items():
        recorded = arrays.params[n].grad[i]
        rec = f"   recorded {_fmt(recorded)}" if np.isfinite(recorded).all() else "   (not recorded)"
        lines.append(f"    dL/d{n} = {_fmt(g[0])}{rec}")
    return lines


def _verdict(report, step) -> list[str]:
    t = report.table
    here = t[t["step"] == step] if len(t) else t
    if not len(here):
        return ["Check: nothing checked at this step."]
    bad = here[~here["passed"]]
    if not len(bad):
        return [f"Check: {'the' if len(here) == 1 else 'all'} {count(len(here), 'check')} of this step "
                f"passed."]
    from .checker.report import describe_row
    return [f"Check: {len(bad)} of {count(len(here), 'check')} FAILED at this step:"] + \
        ["    " + describe_row(r) for r in bad.head(8).to_dict("records")]


def _with_sentence(trace, metric, step, value, report) -> str:
    """The step's reconciliation, opened by the one-sentence answer when ``value`` matches there."""
    from .answers import answer_metric
    from .answer_text import _sentence
    from .reconcile import reconcile_metric
    text = str(reconcile_metric(trace, metric, step, value, report=report))
    if value is None:
        return text
    ans = answer_metric(trace, metric, value, report=report)
    ans.matches = [c for c in ans.matches if c.step == step and c.kind != "val"] or ans.matches
    return (_sentence(ans) + "\n\n" + text) if ans.matches else text
