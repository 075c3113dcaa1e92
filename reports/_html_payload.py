"""The data behind the step-through page: compact JSON built once from the trace.

Why columnar: the page must stay usable for 10,000 iterations, so each quantity is one
flat array (steps x elements) that the browser indexes; nothing is repeated per step.
The check verdict comes from :func:`tracer.check` and the derivation from
:func:`tracer.explain` (embedded for the first :data:`EXPLAIN_LIMIT` steps); each has a
clear fallback when it cannot run. The derivation's numbers (per-row gradient terms,
recomputed predictions and gradients, the optimizer's assignments, the program's lines
with this step's values) are the checker's own: its program evaluated by the engine and
its update rule (:mod:`reports._html_engine`, :mod:`reports._html_program`).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from tracer.display import count

if TYPE_CHECKING:
    from tracer.trace import Trace

#: iterations for which the text of tracer.explain is embedded (it costs ~15 ms per step)
EXPLAIN_LIMIT = 60
#: data rows shown in the page's data table (beyond it only the batch rows are listed)
DATA_TABLE_LIMIT = 5000
#: batch rows (all iterations) up to which the checker's own predictions are embedded beside the recorded ones
RECOMPUTED_PRED_LIMIT = 50_000
#: failing checks listed per step
FAILURES_PER_STEP = 6


def _flat(a):
    a = np.asarray(a, dtype=np.float64).reshape(-1)
    return [None if not np.isfinite(v) else float(v) for v in a]


def _fast_flat(a):
    a = np.asarray(a, dtype=np.float64).reshape(-1)
    if np.isfinite(a).all():
        return a.tolist()
    return _flat(a)


def _check(trace):
    try:
        from tracer.checker import check
        from tracer.checker.report import describe_row
        report = check(trace)
    except Exception as exc:   # the checker is optional for the page
        return None, {"available": False, "message": f"check not available: {type(exc).__name__}: {exc}"}
    table = report.table
    n = trace.n_steps
    step_ids = trace.steps["step"].to_numpy()
    pos = {int(s): i for i, s in enumerate(step_ids)}
    status = ["passed"] * n
    counts = [[0, 0, 0] for _ in range(n)]   # passed, failed, cannot check
    fails = {}
    if len(table):
        st = table["step"].to_numpy()
        stat = table["status"].to_numpy()
        for code, name in enumerate(("passed", "failed", "cannot check")):
            sel = st[stat == name]
            u, c = np.unique(sel, return_counts=True)
            for s, k in zip(u, c):
                if int(s) in pos:
                    counts[pos[int(s)]][code] = int(k)
        failed = table[table["status"] == "failed"]
        for s, grp in failed.groupby("step", sort=True):
            if int(s) in pos:
                fails[str(pos[int(s)])] = [describe_row(r) for r in grp.head(FAILURES_PER_STEP).to_dict("records")]
    for i, (p, f, c) in enumerate(counts):
        status[i] = "failed" if f else ("cannot check" if (c or not p) else "passed")
    findings = [{"message": f.message, "step": f.step, "failed": bool(f.failed)} for f in report.findings]
    return report, {"available": True, "verdict": report.verdict, "summary": report.summary(),
                    "status": status, "counts": counts, "failures": fails, "findings": findings,
                    "cannot_check": list(report.cannot_check)}


def _explanations(trace, report, limit):
    try:
        from tracer.explain import explain
    except ImportError as exc:
        return {"available": False, "message": f"explanation not available: {exc}"}
    out = {}
    n = min(trace.n_steps, limit)
    steps = trace.steps["step"].to_numpy()
    try:
        for i in range(n):
            out[str(i)] = explain(trace, step=int(steps[i]), report=report)
    except Exception as exc:  # display only: the page keeps the explanations made so far
        return {"available": bool(out), "texts": out, "message": f"explanation stopped: {exc}"}
    return {"available": True, "texts": out, "limit": limit}


def _base(trace) -> dict:
    """What was recorded: steps, batch rows, predictions, data, parameters."""
    a = trace.arrays()
    steps = trace.steps
    n = trace.n_steps
    order = np.argsort(a.sample_step, kind="stable")
    s_step = a.sample_step[order]
    pred = None if a.sample_pred is None else a.sample_pred[order]
    ids = steps["step"].to_numpy()
    meta = trace.meta
    payload = {
        "title": f"{meta.get('framework', '?')} run - {count(n, 'iteration')}",
        "framework": meta.get("framework"),
        "n_steps": n,
        "inputs": trace.input_columns, "targets": trace.target_columns,
        "steps": {c: _fast_flat(steps[c]) for c in steps.columns if steps[c].dtype.kind in "fiu"},
        "sample_lo": np.searchsorted(s_step, ids, "left").tolist(),
        "sample_hi": np.searchsorted(s_step, ids, "right").tolist(),
        "sample_rows": a.sample_row[order].tolist(),
        "sample_pred": None if pred is None else _fast_flat(pred),
        "m": 0 if pred is None else int(pred.shape[1]),
    }
    if a.inputs is not None:
        payload.update({"n_rows": int(a.inputs.shape[0]), "k": int(a.inputs.shape[1]),
                        "data_x": _fast_flat(a.inputs), "data_y": _fast_flat(a.targets),
                        "data_table_limit": DATA_TABLE_LIMIT})
    pos = {int(s): i for i, s in enumerate(a.param_step)}
    payload["param_pos"] = [pos.get(int(s), -1) for s in ids]
    payload["params"] = [{"name": name, "shape": list(p.shape), "size": int(p.before.shape[1]),
                          "before": _fast_flat(p.before), "grad": _fast_flat(p.grad),
                          "after": _fast_flat(p.after),
                          "slots": {s: _fast_flat(v) for s, v in p.slots.items()},
                          "grad_source": "recorded" if np.isfinite(p.grad).all() else "not recorded"}
                         for name, p in ((nm, a.params[nm]) for nm in trace.param_names)]
    return payload


def _loss_desc(trace, report, program) -> dict:
    """The loss as the page prints it: its name, elementwise term, derivative and divisors,
    from the declared loss or, when the checker identified it, from the program's loss."""
    from tracer.math import printing
    spec = trace.meta.get("loss")
    try:
        if spec:
            from tracer.math.losses import get_loss
            loss = get_loss(spec)
            return {"loss": loss.describe(), "loss_term": printing.text(loss.elementwise[0]),
                    "loss_grad": printing.text(loss.derivative), "divide_by": [str(f) for f in loss.divide_by]}
        if program is None or not program.has_loss:
            return {}
        from ._html_engine import loss_formulas
        out = loss_formulas(program, trace.arrays())
        ident = report.identified.get("loss") if report is not None else None
        if ident and "not identified" not in ident:
            out["loss"] = f"{ident} (identified by the checker)"
        return out
    except Exception as exc:   # display only: the recorded loss stays
        return {"loss": f"(loss formula not available: {exc})"}


def _engine_parts(trace, report, payload, desc) -> None:
    """The checker's numbers: per-row gradient terms, recomputed predictions and gradients,
    the optimizer's assignments, the program's lines with each step's values."""
    from tracer.math import printing

    from ._html_engine import engine_view, update_values
    from ._html_program import program_payload

    program = report.context.get("program")
    rules = report.context.get("rules") or {}
    view, dense = engine_view(trace, program)
    if view is not None:
        if dense is not None and payload["m"]:
            desc["model"] = {k: dense[k] for k in ("weight", "bias", "transpose", "activation")}
            g = view.per_sample(lambda c: c.grads[dense["z"]])
            payload["row_grad"] = None if g is None or g.shape[1] != payload["m"] else _fast_flat(g)
        pred = None
        if program.outputs.get("prediction") and view.n_samples <= RECOMPUTED_PRED_LIMIT:
            pred = view.per_sample(lambda c: c.ev.prediction)
        payload["pred_recomputed"] = None if pred is None else _fast_flat(pred)
        for p in payload["params"]:
            if program.has_loss and p["name"] in program.params:
                p["grad_recomputed"] = _fast_flat(view.per_param(p["name"]))
                if p["grad_source"] != "recorded":
                    p["grad_source"] = "recomputed"
        payload["program"] = program_payload(program, view, trace.steps["step"].to_numpy())
    if rules:
        rule = next(iter(rules.values()))
        declared = trace.meta.get("optimizer") is not None
        desc["optimizer"] = rule.describe() + ("" if declared else " (identified by the checker)")
        names = {nm for nm, _ in rule.equations()} | set(rule.slots)
        desc["equations"] = [[nm, printing.readable(e, first=nm, variables=names)] for nm, e in rule.equations()]
        desc["symbols"] = {k: float(v) for k, v in rule.symbols.items()}
        try:
            u = update_values(trace, rule, declared, view)
            payload["update_values"] = None if u is None else {
                n: {"eq": [_fast_flat(v) for v in d["eq"]], "prev": {k: _fast_flat(v) for k, v in d["prev"].items()}}
                for n, d in u.items()}
        except Exception:   # display only: the table of recorded values stays
            payload["update_values"] = None


def build_payload(trace: Trace, explain_limit: int = EXPLAIN_LIMIT) -> dict:
    """Everything the page shows, as JSON-ready lists (see the module docstring)."""
    payload = _base(trace)
    report, payload["check"] = _check(trace)
    program = None if report is None else report.context.get("program")
    desc = {"loss": None, "loss_term": None, "loss_grad": None, "optimizer": None, "equations": [],
            "model": None}
    desc.update(_loss_desc(trace, report, program))
    payload["program"] = None
    if report is not None:
        _engine_parts(trace, report, payload, desc)
    payload["desc"] = desc
    from ._html_epoch import epoch_payload
    payload["epoch"] = epoch_payload(trace, report)
    if report is not None and explain_limit:
        payload["explain"] = _explanations(trace, report, explain_limit)
    else:
        payload["explain"] = {"available": False, "message": "explanation not available (no check report)"}
    return payload
