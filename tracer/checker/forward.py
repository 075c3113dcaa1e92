"""Recompute a model's forward and backward pass by hand, for all steps at once.

The model comes from ``meta["model"]``. Layer types map to handlers (BackPACK
style); a layer type with no handler raises :class:`UnsupportedModel`, which the
checker turns into a clear "cannot check", never a crash or a silent pass.

Arrays carry a leading step axis: inputs ``(S, B, k)``, a weight ``(S, in, out)``
(or ``(S, out, in)`` when the layer is ``transpose``), so a whole group of steps
with the same batch size goes through one batched matmul.
"""
from __future__ import annotations

import numpy as np

from ..errors import SteptraceError
from ..math.activations import get_activation


class UnsupportedModel(SteptraceError):
    """The model (or one of its layers) has no hand-check handler."""


def model_layers(model: dict | None) -> list[dict]:
    """The layer list of a neutral model description, validated."""
    if not model:
        raise UnsupportedModel("no model description in the trace")
    if model.get("kind") != "dense_stack":
        raise UnsupportedModel(model.get("reason") or f"model kind {model.get('kind')!r}")
    layers = model.get("layers") or []
    for layer in layers:
        if layer.get("type") not in LAYER_HANDLERS:
            raise UnsupportedModel(f"layer type {layer.get('type')!r} has no hand-check handler")
    if not layers:
        raise UnsupportedModel("the model has no layers")
    return layers


def _dense_forward(layer, params, a):
    w = params[layer["weight"]]
    if layer.get("transpose"):
        w = np.swapaxes(w, -1, -2)
    z = a @ w
    if layer.get("bias"):
        b = params[layer["bias"]]
        z = z + b.reshape(b.shape[:-1] + (1,) + b.shape[-1:]) if b.ndim == a.ndim - 1 else z + b
    act = get_activation(layer.get("activation") or "linear")
    return z, act.f(z)


def _dense_backward(layer, params, a_prev, z, a, upstream):
    """Gradients of one dense layer; returns (grads dict, d/d a_prev)."""
    act = get_activation(layer.get("activation") or "linear")
    dz = act.backward(z, a, upstream)
    w = params[layer["weight"]]
    grads = {}
    dw = np.swapaxes(a_prev, -1, -2) @ dz              # (S, in, out)
    grads[layer["weight"]] = np.swapaxes(dw, -1, -2) if layer.get("transpose") else dw
    if layer.get("bias"):
        grads[layer["bias"]] = dz.sum(axis=-2)
    w_io = np.swapaxes(w, -1, -2) if layer.get("transpose") else w
    return grads, dz @ np.swapaxes(w_io, -1, -2)


LAYER_HANDLERS = {"dense": (_dense_forward, _dense_backward)}


def forward(model: dict, params: dict, inputs: np.ndarray):
    """Predictions ``(S, B, m)`` and the cache backward needs.

    ``params`` maps names to ``(S, *shape)`` arrays; ``inputs`` is ``(S, B, k)``.
    """
    layers = model_layers(model)
    cache = []
    a = inputs
    for layer in layers:
        fwd, _ = LAYER_HANDLERS[layer["type"]]
        z, out = fwd(layer, params, a)
        cache.append((a, z, out))
        a = out
    return a, cache


def backward(model: dict, params: dict, cache, d_output: np.ndarray) -> dict:
    """Gradients ``{name: (S, *shape)}`` of the loss, given d loss / d predictions."""
    layers = model_layers(model)
    grads = {}
    upstream = d_output
    for layer, (a_prev, z, a) in zip(reversed(layers), reversed(cache)):
        _, bwd = LAYER_HANDLERS[layer["type"]]
        g, upstream = bwd(layer, params, a_prev, z, a, upstream)
        grads.update(g)
    return grads


def predict(trace, params: dict, inputs) -> np.ndarray:
    """Predictions of the traced model for one parameter set ``{name: array}`` on ``inputs`` (n, k)."""
    x = np.asarray(inputs, dtype=np.float64)
    if x.ndim == 1:
        x = x.reshape(-1, 1)
    stacked = {k: np.asarray(v, dtype=np.float64)[None] for k, v in params.items()}
    out, _ = forward(trace.meta.get("model"), stacked, x[None])
    return out[0]


def magnitudes(model: dict, params: dict, cache, d_output: np.ndarray, d_output_mag: np.ndarray):
    """Rounding scales: what the predictions and gradients are sums *of*.

    A float32 framework computes ``X @ W`` with an error of about
    ``eps * (|X| @ |W|)``, not ``eps * |X @ W|``: when terms cancel, the result is
    small but its rounding error is not. The checker measures its tolerances against
    these magnitudes (the same passes on absolute values), so cancellation does not
    fail a correct run, while a wrong factor, sign or learning rate still does.
    Returns ``(prediction magnitudes (S, B, m), {name: gradient magnitudes})``.
    """
    layers = model_layers(model)
    a_mag = None
    for layer, (a_prev, z, a) in zip(layers, cache):
        w = np.abs(params[layer["weight"]])
        w_io = np.swapaxes(w, -1, -2) if layer.get("transpose") else w
        src = np.abs(a_prev) if a_mag is None else a_mag
        z_mag = src @ w_io
        if layer.get("bias"):
            b = np.abs(params[layer["bias"]])
            z_mag = z_mag + (b.reshape(b.shape[:-1] + (1,) + b.shape[-1:]) if b.ndim == src.ndim - 1 else b)
        act = get_activation(layer.get("activation") or "linear")
        slope = np.abs(act.backward(z, a, np.ones_like(z))) if act.name != "softmax" else np.ones_like(z)
        a_mag = np.maximum(z_mag * slope, np.abs(a))
    grads = {}
    upstream = np.abs(d_output) + d_output_mag
    for layer, (a_prev, z, a) in zip(reversed(layers), reversed(cache)):
        act = get_activation(layer.get("activation") or "linear")
        dz = np.abs(act.backward(z, a, upstream)) if act.name != "softmax" else upstream
        dw = np.swapaxes(np.abs(a_prev), -1, -2) @ dz
        grads[layer["weight"]] = np.swapaxes(dw, -1, -2) if layer.get("transpose") else dw
        if layer.get("bias"):
            grads[layer["bias"]] = dz.sum(axis=-2)
        w = np.abs(params[layer["weight"]])
        w_io = np.swapaxes(w, -1, -2) if layer.get("transpose") else w
        upstream = dz @ np.swapaxes(w_io, -1, -2)
    return a_mag, grads
