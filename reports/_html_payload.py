"""The data behind the step-through page: compact JSON built once from the trace.

Why columnar: the page must stay usable for 10,000 iterations, so each quantity is one
flat array (steps x elements) that the browser indexes; nothing is repeated per step.
The check verdict comes from :func:`tracer.check` and the derivation from
:func:`tracer.explain` (embedded for the first :data:`EXPLAIN_LIMIT` steps); each has a
clear fallback when it cannot run. The per-row gradient of the loss used in the
page's substituted derivation is computed with the loss's own ``grad`` (sympy.diff).
"""
from __future__ import annotations

import numpy as np

#: iterations for which the text of tracer.explain is embedded (it costs ~15 ms per step)
EXPLAIN_LIMIT = 60
#: data rows shown in the page's data table (beyond it only the batch rows are listed)
DATA_TABLE_LIMIT = 5000
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
    except Exception as exc:
        return {"available": False, "message": f"explanation not available: {exc}"}
    out = {}
    n = min(trace.n_steps, limit)
    steps = trace.steps["step"].to_numpy()
    try:
        for i in range(n):
            out[str(i)] = explain(trace, step=int(steps[i]), report=report)
    except Exception as exc:
        return {"available": bool(out), "texts": out, "message": f"explanation stopped: {exc}"}
    return {"available": True, "texts": out, "limit": limit}


def _dense_info(trace):
    from ._model import dense_layers
    layers = dense_layers(trace.meta)
    if layers is None or len(layers) != 1:
        return None
    layer = layers[0]
    a = trace.arrays()
    if layer.get("weight") not in a.params:
        return None
    return layer


def _row_grads(trace, layer, rows, pred, lo, hi):
    """dL/dz for each recorded batch row (the chain-rule factor of each gradient term)."""
    from tracer.math.activations import get_activation
    from tracer.math.losses import get_loss

    a = trace.arrays()
    spec = trace.meta.get("loss")
    if spec is None or pred is None or a.targets is None:
        return None, None
    try:
        loss = get_loss(spec)
        act = get_activation(layer.get("activation", "linear"))
        if loss.row_wise or act.vector:
            return None, None
        out = np.full(pred.shape, np.nan)
        sizes = hi - lo
        for size in np.unique(sizes):
            idx = np.nonzero(sizes == size)[0]
            if size == 0:
                continue
            take = lo[idx][:, None] + np.arange(size)[None]
            yp = pred[take]
            yt = a.targets[rows[take]]
            g = loss.grad(yp, yt)
            if act.name != "linear":
                # z from the parameters before the step (recorded) and the rows' inputs
                from ._model import forward
                zparams = {layer["weight"]: trace.param_values(layer["weight"], "before")[idx]}
                if layer.get("bias"):
                    zparams[layer["bias"]] = trace.param_values(layer["bias"], "before")[idx]
                lin = dict(layer, activation="linear")
                meta = {"model": {"kind": "dense_stack", "layers": [lin]}}
                z = np.stack([forward(meta, {k: v[j:j + 1] for k, v in zparams.items()},
                                      a.inputs[rows[take[j]]])[0] for j in range(len(idx))])
                g = act.backward(z, yp, g)
            out[take] = g
        return out, loss
    except Exception:
        return None, None


#: parameter elements for which each optimizer assignment's value is embedded
UPDATE_VALUES_LIMIT = 64


def _update_values(trace, rule):
    """Each optimizer assignment's value per step and element, evaluated like the checker:
    every step at once, from the recorded parameters, gradients and previous state.

    Returns ``{param: {"eq": [flat values per assignment], "prev": {slot: flat}}}`` or None.
    """
    import sympy as sp

    from ._excel_formulas import framework_equations as _framework_equations, trace_slot as _trace_slot

    a = trace.arrays()
    if not a.params or sum(p["before"].shape[1] for p in a.params.values()) > UPDATE_VALUES_LIMIT:
        return None
    steps = a.steps
    n = len(a.param_step)
    if n != trace.n_steps:
        return None
    t = np.asarray(steps.get("opt_step", np.arange(1, n + 1)), dtype=np.float64).reshape(-1, 1)
    if not np.isfinite(t).all():
        t = np.arange(1, n + 1, dtype=np.float64).reshape(-1, 1)
    lr = np.asarray(steps.get("lr", np.full(n, np.nan)), dtype=np.float64).reshape(-1, 1)
    lr = np.where(np.isfinite(lr), lr, rule.lr)
    compiled = []
    eqs, f32 = _framework_equations(rule)     # the framework's arithmetic (Keras: float32 beta powers)
    consts = {**{k: float(v) for k, v in rule.symbols.items()}, **f32}
    for name, expr in eqs:
        args = sorted(expr.free_symbols, key=lambda x: x.name)
        compiled.append((name, [x.name for x in args], sp.lambdify(args, expr, "numpy")))
    init = rule.initial_state(np.zeros(1))
    out = {}
    for pname, p in a.params.items():
        size = p["before"].shape[1]
        env = {"p": p["before"].astype(np.float64), "g": p["grad"].astype(np.float64),
               "t": np.broadcast_to(t, (n, size)), "lr": np.broadcast_to(lr, (n, size))}
        env.update({k: np.full((n, size), v) for k, v in consts.items()})
        prev = {}
        for slot in rule.slots:
            rec = _trace_slot(slot, p["slots"])
            if rec is None:
                return None
            after = p["slots"][rec].astype(np.float64)
            before = np.empty_like(after)
            before[0] = init[slot][0]
            before[1:] = after[:-1]
            env[slot] = before
            prev[slot] = _fast_flat(before)
        values = []
        with np.errstate(all="ignore"):
            for name, names, fn in compiled:
                v = np.broadcast_to(np.asarray(fn(*[env[x] for x in names]), dtype=np.float64), (n, size))
                env[name] = v
                values.append(_fast_flat(v))
        out[pname] = {"eq": values, "prev": prev}
    return out


def build_payload(trace, explain_limit: int = EXPLAIN_LIMIT) -> dict:
    """Everything the page shows, as JSON-ready lists (see the module docstring)."""
    from tracer.math import printing

    a = trace.arrays()
    steps = trace.steps
    n = trace.n_steps
    order = np.argsort(a.sample_step, kind="stable")
    s_step = a.sample_step[order]
    rows = a.sample_row[order]
    pred = None if a.sample_pred is None else a.sample_pred[order]
    ids = steps["step"].to_numpy()
    lo = np.searchsorted(s_step, ids, "left")
    hi = np.searchsorted(s_step, ids, "right")
    meta = trace.meta
    payload = {
        "title": f"{meta.get('framework', '?')} run - {n} iterations",
        "framework": meta.get("framework"),
        "n_steps": n,
        "inputs": trace.input_columns, "targets": trace.target_columns,
        "steps": {c: _fast_flat(steps[c]) for c in steps.columns
                  if steps[c].dtype.kind in "fiu"},
        "sample_lo": lo.tolist(), "sample_hi": hi.tolist(),
        "sample_rows": rows.tolist(),
        "sample_pred": None if pred is None else _fast_flat(pred),
        "m": 0 if pred is None else int(pred.shape[1]),
    }
    if a.inputs is not None:
        n_rows = a.inputs.shape[0]
        payload["n_rows"] = int(n_rows)
        payload["k"] = int(a.inputs.shape[1])
        payload["data_x"] = _fast_flat(a.inputs)
        payload["data_y"] = _fast_flat(a.targets)
        payload["data_table_limit"] = DATA_TABLE_LIMIT
    params = []
    pos = {int(s): i for i, s in enumerate(a.param_step)}
    payload["param_pos"] = [pos.get(int(s), -1) for s in ids]
    for name in trace.param_names:
        p = a.params[name]
        params.append({"name": name, "shape": list(p["shape"]), "size": int(p["before"].shape[1]),
                       "before": _fast_flat(p["before"]), "grad": _fast_flat(p["grad"]),
                       "after": _fast_flat(p["after"]),
                       "slots": {s: _fast_flat(v) for s, v in p["slots"].items()}})
    payload["params"] = params
    # descriptions printed from the sympy expressions
    desc = {"loss": None, "loss_term": None, "loss_grad": None, "optimizer": None, "equations": [],
            "model": None}
    try:
        from tracer.math.losses import get_loss
        if meta.get("loss"):
            loss = get_loss(meta["loss"])
            desc["loss"] = loss.describe()
            desc["loss_term"] = printing.text(loss.elementwise[0])
            desc["loss_grad"] = printing.text(loss.derivative)
            desc["divide_by"] = [str(f) for f in loss.divide_by]
    except Exception as exc:
        desc["loss"] = f"(loss formula not available: {exc})"
    try:
        from tracer.math.optimizers import get_optimizer
        if meta.get("optimizer"):
            rule = get_optimizer(meta["optimizer"])
            desc["optimizer"] = rule.describe()
            desc["equations"] = [[nm, printing.text(e)] for nm, e in rule.equations()]
            desc["symbols"] = {k: float(v) for k, v in rule.symbols.items()}
            try:
                payload["update_values"] = _update_values(trace, rule)
            except Exception:   # display only: the table of recorded values stays
                payload["update_values"] = None
    except Exception as exc:
        desc["optimizer"] = f"(optimizer formula not available: {exc})"
    layer = _dense_info(trace)
    if layer is not None:
        desc["model"] = {"weight": layer["weight"], "bias": layer.get("bias"),
                         "transpose": bool(layer.get("transpose")), "activation": layer.get("activation", "linear")}
        g, _ = _row_grads(trace, layer, rows, pred, lo, hi)
        payload["row_grad"] = None if g is None else _fast_flat(g)
    payload["desc"] = desc
    report, payload["check"] = _check(trace)
    if report is not None and explain_limit:
        payload["explain"] = _explanations(trace, report, explain_limit)
    else:
        payload["explain"] = {"available": False, "message": "explanation not available (no check report)"}
    return payload
