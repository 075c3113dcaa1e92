"""Identify what a trace did not declare: the model, the loss, the learning rate.

Hand-written loops rarely say which loss they compute ("sum of squares / 2 / n"?)
or which learning rate they used. Both leave fingerprints in the trace: the
recorded loss divided by the recomputed sum of squares is a constant of the batch
size, and ``-update / gradient`` is the learning rate. The checker states what it
found, so a wrong guess is visible rather than silent.
"""
from __future__ import annotations

from collections import Counter

import numpy as np

from ..math.losses import get_loss, squared_error_family


def guess_linear_model(trace) -> dict | None:
    """A one-layer linear model if the parameter shapes fit ``X W + b`` (or ``X W.T + b``)."""
    arrays = trace.arrays()
    if arrays.inputs is None:
        return None
    k, m = arrays.inputs.shape[1], arrays.targets.shape[1]
    weight = bias = None
    transpose = False
    for name, p in arrays.params.items():
        shape = tuple(p["shape"])
        if len(shape) == 2 and shape == (k, m) and weight is None:
            weight = name
        elif len(shape) == 2 and shape == (m, k) and weight is None:
            weight, transpose = name, True
        elif shape in ((m,), (1, m)) and bias is None:
            bias = name
    if weight is None or len(arrays.params) > 2 or (len(arrays.params) == 2 and bias is None):
        return None
    return {"kind": "dense_stack", "layers": [{"type": "dense", "weight": weight, "bias": bias,
                                               "transpose": transpose, "activation": "linear"}]}


def identify_loss(computed, loss_by_step: dict, rtol: float = 1e-5):
    """Find the squared-error variant whose value equals every recorded loss.

    ``computed`` is the checker's list of (group, params, predictions, cache).
    Returns ``(spec, text)``; spec is None when nothing fits.
    """
    recorded = []
    for sub, _, y_hat, _ in computed:
        actual = np.array([loss_by_step.get(int(s), np.nan) for s in sub.steps])
        recorded.append(actual)
    if not any(np.isfinite(a).any() for a in recorded):
        return None, "not identified: no loss values were recorded"
    for spec in squared_error_family():
        loss = get_loss(spec)
        fits = True
        for (sub, _, y_hat, _), actual in zip(computed, recorded):
            has = np.isfinite(actual)
            if not has.any():
                continue
            value = loss.value(y_hat, sub.y)[has]
            if not np.allclose(value, actual[has], rtol=rtol, atol=0):
                fits = False
                break
        if fits:
            return spec, loss.describe()
    return None, "not identified: the recorded loss is none of the squared-error variants"


def identify_sgd(arrays, grads: dict, rtol: float = 1e-4):
    """The plain-SGD learning rate that explains the updates: ``-update / grad``.

    Returns ``(rates, text)`` where rates maps every parameter to the rate most
    parameters share (the odd ones out will then fail their update check, which is
    the point), or ``(None, reason)``.
    """
    per_param = {}
    for name, p in arrays.params.items():
        if name not in grads:
            continue
        g = grads[name]
        update = p["after"].astype(np.float64) - p["before"].astype(np.float64)
        mask = np.isfinite(g) & (np.abs(g) > 1e-12 * (np.abs(g).max() if np.isfinite(g).any() else 1))
        if not mask.any():
            continue
        rates = -update[mask] / g[mask]
        per_param[name] = float(np.median(rates))
    if not per_param:
        return None, "no gradients to identify the update rule from"
    nice = {name: float(f"{r:.6g}") for name, r in per_param.items()}
    counts = Counter(float(f"{r:.4g}") for r in nice.values())
    best = max(counts.values())
    candidates = [v for v, c in counts.items() if c == best]
    positive = [v for v in candidates if v > 0]
    chosen4 = min(positive) if positive else candidates[0]
    lr = next(v for v in nice.values() if float(f"{v:.4g}") == chosen4)
    odd = {n: r for n, r in nice.items() if float(f"{r:.4g}") != chosen4}
    text = f"updates match SGD with lr {lr:g} (param -= {lr:g} * grad)"
    if odd:
        text += "; except " + ", ".join(f"{n} (moves {r:g} x grad)" for n, r in odd.items())
    return {name: lr for name in grads}, text
