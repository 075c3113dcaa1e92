"""A NumPy forward pass of a declared dense stack, for reports that evaluate the model
at parameters the run did not evaluate (full-data loss after an update, fitted lines).

Why here and not in the checker: reports need the forward pass at arbitrary inputs
(a grid of x values for the fitted line), and only for display. Activations come from
:mod:`tracer.math.activations`, the same sympy expressions the checker uses.
"""
from __future__ import annotations

import numpy as np


def dense_layers(meta):
    """The layers of a declared dense stack, or None when the model is not one."""
    model = meta.get("model")
    if not isinstance(model, dict) or model.get("kind") != "dense_stack" or not model.get("layers"):
        return None
    if any(layer.get("type", "dense") != "dense" for layer in model["layers"]):
        return None
    return model["layers"]


def forward(meta, params: dict, x: np.ndarray) -> np.ndarray | None:
    """Predictions ``(S, N, m)`` for parameters ``params[name]`` shaped ``(S, *shape)`` and
    inputs ``x`` ``(N, k)``; None when the model is not a declared dense stack."""
    from tracer.math.activations import get_activation

    layers = dense_layers(meta)
    if layers is None:
        return None
    a = np.asarray(x, dtype=np.float64)[None]          # (1, N, k)
    for layer in layers:
        w = params.get(layer["weight"])
        if w is None:
            return None
        w = np.asarray(w, dtype=np.float64)
        if w.ndim == 2:
            w = w[None]
        if layer.get("transpose"):
            w = np.swapaxes(w, -1, -2)
        z = a @ w
        if layer.get("bias"):
            b = params.get(layer["bias"])
            if b is None:
                return None
            b = np.asarray(b, dtype=np.float64)
            z = z + b.reshape(b.shape[0], 1, -1)
        a = get_activation(layer.get("activation", "linear")).f(z)
    return a


def params_at(trace, which: str) -> dict:
    """``{name: (S, *shape)}`` for ``which`` in before/after."""
    return {name: trace.param_values(name, which) for name in trace.param_names}
