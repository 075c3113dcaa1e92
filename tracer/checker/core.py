"""``check(trace)``: recompute every recorded step by hand and compare.

For each step the checker recomputes, from the parameters *before* the step:
the predictions (model forward pass), the batch loss, every gradient (backward
pass with sympy-derived derivatives), the optimizer's update and state. Steps are
grouped by batch size and each group is computed with batched NumPy calls, so the
cost is a few array operations per group, not per step.

What the trace does not declare is identified: the loss among the squared-error
family users write by hand, and a plain SGD learning rate per parameter.
"""
from __future__ import annotations

import numpy as np

from ..errors import SteptraceError
from ..math.losses import get_loss
from ..math.optimizers import get_optimizer
from . import identify
from .batches import step_groups
from .forward import UnsupportedModel, backward, forward, magnitudes, model_layers
from .interpret import name_factor
from .report import CheckReport, Finding, TableBuilder

TOLERANCES = {  # (rtol, atol) by the precision the run computed in
    # pred and grad tolerances are relative to the magnitudes of the sums (see forward.magnitudes)
    "float64": {"pred": (1e-9, 1e-12), "loss": (1e-9, 1e-12), "grad": (1e-9, 1e-15), "update": (1e-7, 0.0)},
    "float32": {"pred": (2e-5, 1e-9), "loss": (1e-5, 1e-6), "grad": (5e-5, 1e-9), "update": (2e-3, 0.0)},
}


def run_precision(trace) -> str:
    """``float32`` if any parameter was recorded in single (or lower) precision."""
    for p in trace.arrays().params.values():
        if p["before"].dtype.itemsize <= 4:
            return "float32"
    return "float64"


def check(trace, *, loss: dict | None = None, optimizer: dict | None = None,
          precision: str | None = None) -> CheckReport:
    """Check a trace against the math; returns a :class:`CheckReport`.

    ``loss`` / ``optimizer`` override the trace's declared ones (neutral dicts, see
    docs/ARCHITECTURE.md). ``precision`` (``float32``/``float64``) overrides the
    tolerance choice.
    """
    arrays = trace.arrays()
    meta = trace.meta
    precision = precision or run_precision(trace)
    if precision not in TOLERANCES:
        raise SteptraceError(f"precision: expected float32 or float64, got {precision!r}")
    tol = TOLERANCES[precision]
    builder = TableBuilder()
    report = CheckReport(table=None, n_steps=trace.n_steps)
    groups = step_groups(arrays)
    model = meta.get("model")

    if trace.n_steps == 0:
        report.cannot_check.append("the trace has no recorded steps")
    if not arrays.params:
        report.cannot_check.append(
            "no parameter values were recorded (summary capture or no parameters found)")
    if model is None and arrays.params:
        model = identify.guess_linear_model(trace)
        if model is not None:
            report.identified["model"] = "linear model y = X W + b (from the parameter shapes)"
    try:
        model_layers(model)
        model_error = None
    except UnsupportedModel as exc:
        model_error = str(exc)
        report.cannot_check.append(f"model: {exc}")

    loss_spec = loss or meta.get("loss")
    # ---- loss: declared, or identified from a first forward pass ----------------
    steps_col = arrays.steps
    loss_by_step = dict(zip(np.asarray(steps_col.get("step", []), dtype=np.int64).tolist(),
                            np.asarray(steps_col.get("loss", []), dtype=np.float64).tolist()))
    can_forward = model_error is None and bool(arrays.params) and bool(groups)
    if can_forward:
        model_error = _fits_model(model, arrays)
        if model_error:
            report.cannot_check.append(f"model: {model_error}")
            can_forward = False
    if can_forward and loss_spec is None:
        preds = [(sub, None, forward(model, _params_at(trace, sub), sub.x)[0], None)
                 for sub in _chunks(groups, arrays)]
        loss_spec, text = identify.identify_loss(preds, loss_by_step)
        report.identified["loss"] = text
        del preds
    loss_obj = None
    if can_forward and loss_spec is not None:
        try:
            loss_obj = get_loss(loss_spec)
            report.context["loss"] = loss_spec
        except SteptraceError as exc:
            report.cannot_check.append(f"loss: {exc}")
    elif can_forward:
        report.cannot_check.append("loss: not declared and not identified, so gradients cannot be recomputed")

    # ---- per chunk of steps: predictions, loss, gradients ---------------------
    grads_expected = {}   # name -> {step: grad}, kept only where the run recorded no gradient
    for sub in (_chunks(groups, arrays) if can_forward else ()):
        params = _params_at(trace, sub)
        y_hat, cache = forward(model, params, sub.x)
        pred_mag = np.abs(y_hat)
        grads = grad_mag = {}
        if loss_obj is not None:
            value = loss_obj.value(y_hat, sub.y)
            d_out = loss_obj.grad(y_hat, sub.y)
            grads = backward(model, params, cache, d_out)
            with np.errstate(all="ignore"):
                probe = np.where(pred_mag > 0, pred_mag, 1.0) * 1e-3
                d_out_mag = np.abs(loss_obj.grad(y_hat + probe, sub.y) - d_out) * 1e3
                pred_mag, grad_mag = magnitudes(model, params, cache, d_out, np.nan_to_num(d_out_mag))
                # the loss moves by about sum |dL/dy_pred| * (rounding of y_pred): near
                # convergence that is far larger than eps * L itself
                loss_mag = np.nansum(np.abs(d_out) * np.maximum(pred_mag, np.abs(sub.y)),
                                     axis=tuple(range(1, d_out.ndim)))
            actual = np.array([loss_by_step.get(int(s), np.nan) for s in sub.steps])
            has = np.isfinite(actual)
            if has.any():
                rtol, atol = tol["loss"]
                builder.add(step=sub.steps[has], quantity="loss", expected=value[has], actual=actual[has],
                            scale=loss_mag[has], rtol=rtol, atol=atol)
        if sub.pred is not None:
            _check_predictions(builder, tol, sub, y_hat, pred_mag)
        for name, g in grads.items():
            rec = arrays.params[name]["grad"][sub.param_pos]
            g = g.reshape(len(sub.steps), -1)
            if rec.shape[1] != g.shape[1]:
                report.cannot_check.append(
                    f"grad of {name}: recorded {rec.shape[1]} values, the model gives {g.shape[1]}")
                continue
            has = np.isfinite(rec).all(axis=1)
            if has.any():
                rtol, atol = tol["grad"]
                mag = grad_mag[name].reshape(len(sub.steps), -1)[has]
                _add_worst(builder, "grad", name, sub.steps[has], g[has], rec[has].astype(np.float64),
                           mag, rtol, atol)
            if (~has).any():
                grads_expected.setdefault(name, {}).update(zip(sub.steps[~has].tolist(), g[~has]))
    # ---- updates and optimizer state -------------------------------------------
    _check_updates(trace, report, builder, tol, optimizer or meta.get("optimizer"), grads_expected)

    # ---- framework-logged values and diagnoses ---------------------------------
    _extra_checks(trace, report, builder, tol)

    report.context["model"] = None if model_error else model
    report.table = builder.build()
    _factor_findings(report, trace)
    return report


MAX_CHUNK_BYTES = 256 * 1024**2


def _chunks(groups, arrays):
    """Split step groups so one chunk's float64 parameters stay under MAX_CHUNK_BYTES."""
    per_step = 8 * sum(p["before"].shape[1] for p in arrays.params.values()) or 1
    for g in groups:
        ok_pos = g.param_pos >= 0
        if not ok_pos.any():
            continue
        sub = _subset(g, ok_pos)
        per_step_total = per_step * 4 + 8 * sub.x[0].size * 4
        size = max(1, MAX_CHUNK_BYTES // per_step_total)
        for start in range(0, len(sub.steps), size):
            yield _subset(sub, slice(start, start + size))


def _subset(g, mask):
    from .batches import StepGroup
    return StepGroup(steps=g.steps[mask], rows=g.rows[mask], x=g.x[mask], y=g.y[mask],
                     pred=None if g.pred is None else g.pred[mask], param_pos=g.param_pos[mask])


def _params_at(trace, sub):
    """The parameters before each step of ``sub``, as float64 ``(S, *shape)`` arrays."""
    return {name: trace.param_values(name, "before")[sub.param_pos].astype(np.float64)
            for name in trace.arrays().params}


def _fits_model(model, arrays) -> str | None:
    """Why the recorded parameters cannot feed the model (None when they can)."""
    for layer in model_layers(model):
        for key in ("weight", "bias"):
            name = layer.get(key)
            if name and name not in arrays.params:
                return f"layer parameter {name!r} was not recorded (recorded: {list(arrays.params)})"
    return None


def _check_predictions(builder, tol, sub, y_hat, pred_mag):
    if y_hat.shape != sub.pred.shape:
        builder.add_cannot_check(step=sub.steps, quantity="prediction")
        return
    rtol, atol = tol["pred"]
    with np.errstate(invalid="ignore", divide="ignore"):
        badness = np.abs(y_hat - sub.pred) / (atol + rtol * np.maximum(pred_mag, np.abs(sub.pred)) + 1e-300)
    badness = np.where(np.isnan(badness), np.inf, badness).reshape(len(sub.steps), -1)
    worst = badness.argmax(axis=1)
    m = y_hat.shape[2]
    r = np.arange(len(worst))
    flat = lambda a: a.reshape(len(sub.steps), -1)[r, worst]  # noqa: E731
    builder.add(step=sub.steps, quantity="prediction", sample=sub.rows[r, worst // m],
                index=worst % m if m > 1 else None, expected=flat(y_hat), actual=flat(sub.pred),
                scale=flat(pred_mag), rtol=rtol, atol=atol)


def _add_worst(builder, quantity, name, steps, expected, actual, scale, rtol, atol):
    """One row per step for a parameter: its worst element relative to the tolerance."""
    with np.errstate(invalid="ignore", divide="ignore"):
        badness = np.abs(expected - actual) / (atol + rtol * np.maximum(scale, np.maximum(
            np.abs(expected), np.abs(actual))) + 1e-300)
    badness = np.where(np.isnan(badness), np.inf, badness)
    worst = badness.argmax(axis=1)
    r = np.arange(len(worst))
    builder.add(step=steps, quantity=quantity, param=name, index=worst, expected=expected[r, worst],
                actual=actual[r, worst], scale=scale[r, worst], rtol=rtol, atol=atol)


def _check_updates(trace, report, builder, tol, opt_spec, grads_expected):
    arrays = trace.arrays()
    param_step = arrays.param_step
    if not arrays.params or param_step.size == 0:
        return
    steps_col = arrays.steps
    step_numbers = np.asarray(steps_col.get("step", []), dtype=np.int64)
    opt_step_col = steps_col.get("opt_step")
    t_by_step = {}
    lr_col = np.asarray(steps_col.get("lr", np.full(step_numbers.size, np.nan)), dtype=np.float64)
    lr_by_step = dict(zip(step_numbers.tolist(), lr_col.tolist()))
    if opt_step_col is not None:
        t_by_step = dict(zip(step_numbers.tolist(), np.asarray(opt_step_col, dtype=np.float64).tolist()))

    # the gradient each update used: recorded if present, else the recomputed one
    used = {}
    for name, p in arrays.params.items():
        g = p["grad"].astype(np.float64)
        exp = grads_expected.get(name, {})
        missing = ~np.isfinite(g).all(axis=1)
        for i in np.nonzero(missing)[0]:
            e = exp.get(int(param_step[i]))
            if e is not None:
                g[i] = e.reshape(-1)
        used[name] = g

    rules = {}
    # parameters the hook saw as constants (no gradient, e.g. requires_grad=False): the
    # math says they must not move; the diagnosis names them as never updated
    frozen = {n for n, r in (trace.meta.get("update_rule") or {}).items()
              if isinstance(r, dict) and r.get("kind") == "frozen" and n in arrays.params}
    if opt_spec is None:
        rates, text = identify.identify_sgd(arrays, {n: g for n, g in used.items() if n not in frozen})
        if rates is None:
            report.cannot_check.append(f"optimizer: {text}")
            return
        report.identified["optimizer"] = text
        rules = {name: get_optimizer({"name": "sgd", "convention": "plain", "lr": lr})
                 for name, lr in rates.items()}
    else:
        try:
            rule = get_optimizer(opt_spec)
        except SteptraceError as exc:
            report.cannot_check.append(f"optimizer: {exc}")
            return
        rules = {name: rule for name in arrays.params}
    for name in frozen:
        rules[name] = get_optimizer({"name": "sgd", "convention": "plain", "lr": 0.0})
    report.context["rules"] = rules

    rtol, _ = tol["update"]
    eps = np.finfo(np.float32 if tol is TOLERANCES["float32"] else np.float64).eps
    # the optimizer's step number and learning rate per recorded step (same for every param)
    if t_by_step:
        t = np.array([t_by_step.get(int(s), np.nan) for s in param_step])
    elif opt_spec is not None:
        t = param_step - param_step.min() + 1.0
    else:
        t = param_step.astype(np.float64)
    lr_rec = np.array([lr_by_step.get(int(s), np.nan) for s in param_step])
    for name, p in arrays.params.items():
        rule = rules[name]
        before = p["before"].astype(np.float64)
        after = p["after"].astype(np.float64)
        g = used[name]
        ok_rows = np.isfinite(g).all(axis=1) & np.isfinite(before).all(axis=1)
        state_before, state_ok = _state_before(rule, p, before, param_step, t)
        ok_rows &= state_ok
        if not ok_rows.any():
            report.cannot_check.append(f"update of {name}: no step with a gradient and a known optimizer state")
            continue
        shape = (-1,) + tuple(p["shape"])
        sb = {k: v[ok_rows].reshape(shape) for k, v in state_before.items()}
        lr_used = lr_rec[ok_rows] if opt_spec is not None and np.isfinite(lr_rec[ok_rows]).all() else None
        new_p, new_state = rule.step(before[ok_rows].reshape(shape), g[ok_rows].reshape(shape), sb, t[ok_rows],
                                     lr_used)
        new_p = np.asarray(new_p).reshape(int(ok_rows.sum()), -1)
        exp_update = new_p - before[ok_rows]
        act_update = after[ok_rows] - before[ok_rows]
        # the recorded update carries rounding of |before| * eps: measure against that too
        scale = np.maximum(np.abs(before[ok_rows]), np.abs(after[ok_rows])) * eps * 8 / max(rtol, 1e-300)
        scale = np.maximum(scale, np.abs(exp_update).max(axis=1, keepdims=True) * 1e-3)
        _add_worst(builder, "update", name, param_step[ok_rows], exp_update, act_update, scale, rtol, 0.0)
        for slot, value in new_state.items():
            if slot not in p["slots"]:
                continue
            rec = p["slots"][slot][ok_rows].astype(np.float64)
            ev = np.asarray(value, dtype=np.float64).reshape(rec.shape)
            sc = np.maximum(np.abs(ev).max(axis=1, keepdims=True), np.abs(rec).max(axis=1, keepdims=True))
            _add_worst(builder, slot, name, param_step[ok_rows], ev, rec, np.broadcast_to(sc, ev.shape),
                       tol["grad"][0], tol["grad"][1])


def _state_before(rule, p, before, param_step, t):
    """Optimizer state before each recorded step: initial at the optimizer's first
    step, else the recorded state after the previous step (when that was recorded)."""
    slots = list(getattr(rule, "slots", []) or [])
    n = before.shape[0]
    ok = np.ones(n, dtype=bool)
    if not slots:
        return {}, ok
    init = rule.initial_state(before.reshape((n,) + tuple(p["shape"])))
    state = {}
    first = np.asarray(t) == 1
    prev_consecutive = np.zeros(n, dtype=bool)
    prev_consecutive[1:] = np.diff(param_step) == 1
    for slot in slots:
        init_v = np.asarray(init[slot], dtype=np.float64).reshape(n, -1)
        rec = p["slots"].get(slot)
        if rec is None:
            prev = np.full_like(init_v, np.nan)
        else:
            prev = np.empty_like(init_v)
            prev[0] = np.nan
            prev[1:] = rec[:-1]
        value = np.where(first[:, None], init_v, prev)
        ok &= first | (prev_consecutive & np.isfinite(prev).all(axis=1))
        state[slot] = value
    return state, ok


def _extra_checks(trace, report, builder, tol):
    import importlib
    rtol, atol = tol["loss"]
    try:
        logged = importlib.import_module(".logged", __package__)
        rows = logged.check_logged(trace)
    except ModuleNotFoundError as exc:
        if exc.name != __package__ + ".logged":
            raise
        rows = []
    except SteptraceError as exc:
        report.cannot_check.append(f"logged values: {exc}")
        rows = []
    builder.add_rows(rows, rtol=rtol, atol=atol)
    try:
        findings = importlib.import_module(".diagnose", __package__).diagnose(trace)
    except ModuleNotFoundError as exc:
        if exc.name != __package__ + ".diagnose":
            raise
        findings = []
    for f in findings:
        report.findings.append(Finding(kind=f["kind"], message=f["message"], param=f.get("param"),
                                       step=f.get("step"), failed=f.get("failed", True)))


def _factor_findings(report, trace):
    """Turn the first failed update per parameter into a named diagnosis."""
    fails = report.failures
    if not len(fails):
        return
    arrays = trace.arrays()
    bs = dict(zip(np.asarray(arrays.steps.get("step", []), dtype=np.int64).tolist(),
                  np.asarray(arrays.steps.get("batch_size", []), dtype=np.float64).tolist()))
    seen = {f.param for f in report.findings}
    for quantity in ("update", "grad"):
        sub = fails[fails["quantity"] == quantity]
        for name, rows in sub.groupby("param", sort=False):
            if name in seen:
                continue
            first = rows.iloc[0]
            diagnosis = name_factor(first["factor"], bs.get(int(first["step"])))
            if diagnosis:
                seen.add(name)
                report.findings.append(Finding(
                    kind=f"{quantity}_factor", param=name, step=int(first["step"]),
                    message=f"{name}: {quantity} is {first['factor']:.6g} x the expected one - {diagnosis}"))
