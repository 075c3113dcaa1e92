"""Name the training-loop bugs a trace shows, in sentences a user can act on.

Why separate from the numeric check: a failed update says *that* a step is wrong;
these findings say *why*, from evidence the hooks recorded:

- ``never_updated``: a parameter whose value never changes although it gets a
  gradient, or a constant tensor used as a layer's weight/bias that never receives
  a gradient (``meta["torch"]["frozen"]``, S4's ``b1``);
- ``updated_twice``: more than one in-place write per step (``updates_<param>``
  column: version-counter bumps plus ``.data`` assignments counted by the hook);
- ``grad_accumulating``: backward ran while the gradient still held a value an
  earlier update had already used (``stale_grad_<param>`` column): nobody zeroed it;
- ``double_averaging``: the loss already averages over the batch and the update line
  divides by the batch size again (``meta["torch"]["update_source"]``).

Framework-neutral: reads only ``trace.meta`` and the trace's arrays.
"""
from __future__ import annotations

import numpy as np

__all__ = ["diagnose"]


def diagnose(trace) -> list[dict]:
    """Findings ``{"kind", "param", "step", "message"}`` for the bugs the trace shows."""
    findings = []
    findings += _never_updated(trace)
    findings += _updated_twice(trace)
    findings += _grad_accumulating(trace)
    findings += _double_averaging(trace)
    return findings


def _steps(trace):
    arrays = trace.arrays()
    cols = arrays.steps
    step = np.asarray(cols.get("step", []), dtype=np.int64)
    return arrays, cols, step


def _layer_role(trace, name):
    model = trace.meta.get("model") or {}
    for i, layer in enumerate(model.get("layers") or [], start=1):
        if layer.get("bias") == name:
            return f"the bias of layer {i}"
        if layer.get("weight") == name:
            return f"the weight of layer {i}"
    return None


def _never_updated(trace):
    out = []
    meta = trace.meta
    arrays, cols, step = _steps(trace)
    frozen = set((meta.get("torch") or {}).get("frozen") or [])
    first = int(step[0]) if step.size else None
    for name in trace.param_names or list(arrays.params):
        role = _layer_role(trace, name)
        if name in frozen:
            where = f"is used as {role}" if role else "is used by the model"
            out.append({"kind": "never_updated", "param": name, "step": first, "message": (
                f"{name} {where} but is never updated: it does not require grad, so backward gives it "
                f"no gradient and no update touches it. Call {name}.requires_grad_(True) and make sure "
                f"it is in the list of parameters you update (is it missing from `params`?).")})
            continue
        moved, has_grad = _moved_and_grad(arrays, cols, name)
        if moved is None or moved or not has_grad:
            continue
        out.append({"kind": "never_updated", "param": name, "step": first, "message": (
            f"{name} gets a non-zero gradient but its value never changes over the "
            f"{len(step)} recorded steps: the update never touches it. Is it missing from the "
            f"optimizer's parameters or from the list your update loop walks?")})
    return out


def _moved_and_grad(arrays, cols, name):
    p = arrays.params.get(name)
    if p is not None and len(p["before"]):
        upd = p["after"].astype(np.float64) - p["before"].astype(np.float64)
        g = p["grad"]
        finite = np.isfinite(upd)
        moved = bool(np.any(upd[finite] != 0))
        has_grad = bool(np.any(np.isfinite(g) & (g != 0)))
        return moved, has_grad
    un, gn = cols.get("update_norm_" + name), cols.get("grad_norm_" + name)
    if un is None or gn is None:
        return None, False
    un, gn = np.asarray(un, dtype=np.float64), np.asarray(gn, dtype=np.float64)
    return bool(np.any(un[np.isfinite(un)] != 0)), bool(np.any(np.isfinite(gn) & (gn != 0)))


def _updated_twice(trace):
    out = []
    arrays, cols, step = _steps(trace)
    sources = (trace.meta.get("torch") or {}).get("update_source") or {}
    for key in cols:
        if not key.startswith("updates_"):
            continue
        name = key[len("updates_"):]
        counts = np.asarray(cols[key], dtype=np.float64)
        many = np.isfinite(counts) & (counts >= 2)
        if not many.any():
            continue
        k = int(np.nanmax(counts[many]))
        n_steps = int(many.sum())
        src = sources.get(name, {}).get("code")
        where = f" (by `{src}`)" if src else ""
        out.append({"kind": "updated_twice", "param": name, "step": int(step[many][0]), "message": (
            f"{name} is updated {k} times per step{where} in {n_steps} of {len(step)} recorded steps: "
            f"each step moves it {k} times as far as intended. It most likely appears "
            f"{k} times in the list of parameters the update walks; list each parameter once.")})
    return out


def _grad_accumulating(trace):
    arrays, cols, step = _steps(trace)
    names, first = [], None
    for key in cols:
        if not key.startswith("stale_grad_"):
            continue
        stale = np.asarray(cols[key], dtype=np.float64)
        hit = np.isfinite(stale) & (stale > 0)
        if hit.any():
            names.append(key[len("stale_grad_"):])
            s = int(step[hit][0])
            first = s if first is None else min(first, s)
    if not names:
        return []
    opt = trace.meta.get("optimizer")
    fix = "optimizer.zero_grad()" if opt else "p.grad.zero_() for each parameter (or set p.grad = None)"
    return [{"kind": "grad_accumulating", "param": names[0] if len(names) == 1 else None, "step": first,
             "message": (
                 f"From step {first} on, backward added to gradients that an earlier update had already "
                 f"used ({', '.join(names)}): gradients are accumulating because they are never zeroed, "
                 f"so each step uses the sum of all gradients so far. Call {fix} once per step, "
                 f"before backward.")}]


def _double_averaging(trace):
    meta = trace.meta
    loss = meta.get("loss") or {}
    div = loss.get("divide_by") or []
    if "n" not in div:
        return []
    sources = (meta.get("torch") or {}).get("update_source") or {}
    hits = {n: s for n, s in sources.items() if s.get("divides_by_batch")}
    if not hits:
        return []
    name, src = next(iter(hits.items()))
    b = src.get("batch_size")
    what = loss.get("name", "the loss")
    red = loss.get("reduction")
    loss_text = f"{what} (reduction={red!r})" if red else f"{what} (divided by n)"
    arrays, cols, step = _steps(trace)
    return [{"kind": "double_averaging", "param": None, "step": int(step[0]) if step.size else None,
             "message": (
                 f"The loss {loss_text} already averages over the batch, and the update "
                 f"`{src.get('code')}` divides by the batch size ({src.get('divides_by_batch')} = {b}) "
                 f"again: every step is {b} times smaller than intended (effective learning rate lr/{b}). "
                 f"Drop the division by {src.get('divides_by_batch')}, or sum the loss instead of "
                 f"averaging it.")}]
