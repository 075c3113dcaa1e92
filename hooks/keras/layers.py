"""Keras layers and activations as step-program nodes, exactly as Keras computes them.

Why by identity: a layer's activation is a function object (``Dense(activation="relu")``
stores ``keras.activations.relu``). Matching the function itself, not its name, means a
user's own function called ``relu`` is never mistaken for Keras's. Each activation is
written with Keras 3.15's own formula for the active backend
(``keras/src/backend/{tensorflow,torch}/nn.py``): ``gelu`` is exact (Keras's default
``approximate=False``), ``leaky_relu`` has slope 0.2, torch's ``softplus`` returns ``x``
above 20. A sigmoid or softmax output remembers its logits, because Keras's
TensorFlow crossentropies use them (``_keras_logits``).

Layers: ``Dense`` (``x @ kernel + bias``, then the activation), ``Activation``, the
activation layers ``ReLU`` (default, ``max_value=6`` or a slope alone), ``LeakyReLU``,
``ELU`` and ``Softmax`` (last axis), ``Flatten``, ``Reshape``, ``Dropout`` (the identity when its rate is 0; a mask drawn
each step is not recorded, so otherwise it cannot be checked), ``ActivityRegularization``
and ``InputLayer``. Anything else raises :class:`Unsupported`.
"""
from __future__ import annotations

import inspect
import os
from typing import Callable

import keras

from .builder import ProgramBuilder, Unsupported

__all__ = ["emit_activation", "emit_layer", "source_line", "ACTIVATIONS"]

ACTIVATIONS = ("linear", "relu", "relu6", "sigmoid", "softmax", "log_softmax", "tanh", "elu", "selu", "gelu",
               "silu", "softplus", "softsign", "leaky_relu", "exponential", "hard_sigmoid", "hard_silu", "mish")


def source_line(obj: object) -> str | None:
    """``file:line`` where a user's class or function is defined (None for Keras's own)."""
    target = obj if inspect.isclass(obj) or inspect.isfunction(obj) else type(obj)
    try:
        path = inspect.getsourcefile(target)
        line = inspect.getsourcelines(target)[1]
    except (TypeError, OSError):
        return None
    if path is None or os.sep + "keras" + os.sep in path:
        return None
    return f"{os.path.basename(path)}:{line}"


def _functions() -> dict[int, str]:
    """id(Keras activation function) -> its name in :data:`ACTIVATIONS`."""
    out = {}
    for name in ACTIVATIONS:
        try:
            out[id(keras.activations.get(name))] = name
        except (ValueError, TypeError):
            continue
    return out


def emit_activation(b: ProgramBuilder, fn: Callable, x: str, base: str, label: str, backend: str) -> str:
    """Nodes for ``fn(x)``; returns the output's name (``x`` itself for linear)."""
    name = _functions().get(id(fn))
    if name is None:
        shown = getattr(fn, "__name__", type(fn).__name__)
        raise Unsupported(f"activation {shown}", "not one of Keras's activations the step program has",
                          source_line(fn))
    if name == "linear":
        return x
    if name in ("sigmoid", "softmax"):
        out = b.add(base, name, [x], label=label, **({"dim": -1} if name == "softmax" else {}))
        b.logits[out] = x
        return out
    return _composite(b, name, x, base, label, backend)


def _softplus(b, x, base, label, backend):
    # torch's softplus returns x above 20; TensorFlow's is the exact function
    return b.add(base, "softplus", [x], label=label, **({"threshold": 20.0} if backend == "torch" else {}))


def _relu6(b, x, base, label):
    # min(relu(x), 6): the gradient is 0 at x == 0, as TensorFlow's Relu6Grad and torch's
    # hardtanh give it (a zero bias over a dead ReLU row hits exactly 0; clamp would pass 1)
    return b.add(base, "minimum", [b.add(base + "/relu", "relu", [x], label=label), 6.0], label=label)


def _hard_sigmoid(b, x, base, label):
    # relu6(x + 3) / 6 (TensorFlow) == torch's hardsigmoid
    shifted = b.add(base + "/x+3", "add", [x, 3.0], label=label)
    return b.add(base, "div", [_relu6(b, shifted, base + "/relu6", label), 6.0], label=label)


def _composite(b, name, x, base, label, backend):
    simple = {"relu": {}, "tanh": {}, "selu": {}, "silu": {}, "elu": {"alpha": 1.0},
              "gelu": {"approximate": "none"}, "leaky_relu": {"alpha": 0.2}}
    if name in simple:
        return b.add(base, name, [x], label=label, **simple[name])
    if name == "relu6":
        return _relu6(b, x, base, label)
    if name == "log_softmax":
        return b.add(base, "log_softmax", [x], label=label, dim=-1)
    if name == "exponential":
        return b.add(base, "exp", [x], label=label)
    if name == "softplus":
        return _softplus(b, x, base, label, backend)
    if name == "softsign":
        denom = b.add(base + "/1+|x|", "add", [1.0, b.add(base + "/|x|", "abs", [x], label=label)], label=label)
        return b.add(base, "div", [x, denom], label=label)
    if name == "hard_sigmoid":
        return _hard_sigmoid(b, x, base, label)
    if name == "hard_silu":
        return b.add(base, "mul", [x, _hard_sigmoid(b, x, base + "/hard_sigmoid", label)], label=label)
    if name == "mish":
        sp = _softplus(b, x, base + "/softplus", label, backend)
        return b.add(base, "mul", [x, b.add(base + "/tanh", "tanh", [sp], label=label)], label=label)
    raise Unsupported(f"activation {name}", "no formula")      # pragma: no cover - ACTIVATIONS is closed


def emit_layer(b: ProgramBuilder, layer: keras.layers.Layer, x: str, shape: tuple,
               ctx: object) -> tuple[str, tuple]:
    """Nodes for one layer applied to ``x`` (per-step shape ``shape``, batch first).

    ``ctx`` gives ``backend``, ``training`` and ``weight(variable, base)`` (the name of a
    recorded parameter, or a constant for a frozen one). Returns the output's name and
    shape; activity regularisers are added by the caller.
    """
    kind = type(layer)
    label = f"{layer.name} ({kind.__name__})"
    base = layer.name
    if kind is keras.layers.InputLayer:
        return x, shape
    if kind is keras.layers.Dense:
        return _dense(b, layer, x, shape, ctx, label), shape[:-1] + (int(layer.units),)
    if kind is keras.layers.Activation:
        return emit_activation(b, layer.activation, x, base, label, ctx.backend), shape
    if kind is keras.layers.Flatten:
        return _flatten(b, layer, x, shape, label)
    if kind is keras.layers.Reshape:
        target = tuple(int(d) for d in layer.target_shape)
        out = b.add(base, "reshape", [x], label=label, shape=[0, *target])
        return out, (shape[0],) + _resolved(shape[1:], target)
    if kind is keras.layers.Dropout:
        if ctx.training and layer.rate > 0:
            raise Unsupported("Dropout", f"layer {layer.name} draws a random mask each step (rate {layer.rate}); "
                              "the mask is not recorded")
        return x, shape
    if kind is keras.layers.ActivityRegularization:
        return x, shape
    if kind in _ACTIVATION_LAYERS:
        return _ACTIVATION_LAYERS[kind](b, layer, x, len(shape), base, label), shape
    raise Unsupported(kind.__name__, f"layer {layer.name!r}: no formula in the step program registry",
                      source_line(layer))


def _relu_layer(b, layer, x, rank, base, label):
    """``ReLU(max_value, negative_slope, threshold)``: Keras's ``ReLU.static_call`` takes
    ``relu`` by default, ``relu6`` for ``max_value=6`` and ``leaky_relu`` for a slope alone."""
    slope, top, threshold = float(layer.negative_slope), layer.max_value, float(layer.threshold)
    if threshold == 0.0 and slope == 0.0 and top is None:
        return b.add(base, "relu", [x], label=label)
    if threshold == 0.0 and slope == 0.0 and float(top) == 6.0:
        return _relu6(b, x, base, label)
    if threshold == 0.0 and top is None:
        return b.add(base, "leaky_relu", [x], label=label, alpha=slope)
    raise Unsupported("ReLU", f"layer {layer.name!r}: ReLU with max_value={top}, negative_slope={slope}, "
                      f"threshold={threshold} has no formula in the step program registry")


def _leaky_relu_layer(b, layer, x, rank, base, label):
    return b.add(base, "leaky_relu", [x], label=label, alpha=float(layer.negative_slope))


def _elu_layer(b, layer, x, rank, base, label):
    # TensorFlow: where(x > 0, elu(x), alpha * elu(x)); torch: F.elu(x, alpha) - both alpha (exp(x) - 1) below 0
    return b.add(base, "elu", [x], label=label, alpha=float(layer.alpha))


def _softmax_layer(b, layer, x, rank, base, label):
    """``Softmax(axis)`` over the last axis (``activations.softmax``, whose output keeps its logits)."""
    axis = layer.axis[0] if isinstance(layer.axis, (list, tuple)) and len(layer.axis) == 1 else layer.axis
    if not isinstance(axis, int) or axis not in (-1, rank - 1):
        raise Unsupported("Softmax", f"layer {layer.name!r}: softmax over axis {layer.axis} (only the last axis "
                          "is modelled)")
    out = b.add(base, "softmax", [x], label=label, dim=-1)
    b.logits[out] = x
    return out


_ACTIVATION_LAYERS = {keras.layers.ReLU: _relu_layer, keras.layers.LeakyReLU: _leaky_relu_layer,
                      keras.layers.ELU: _elu_layer, keras.layers.Softmax: _softmax_layer}


def _dense(b, layer, x, shape, ctx, label):
    if getattr(layer, "lora_enabled", False) or getattr(layer, "quantization_mode", None):
        raise Unsupported("Dense", f"LoRA or quantized Dense layer {layer.name}")
    kernel = ctx.weight(layer.kernel, layer.name + "/kernel")
    z = b.add(layer.name + "/matmul" if layer.use_bias else layer.name + "/z", "matmul", [x, kernel], label=label)
    if layer.use_bias:
        z = b.add(layer.name + "/z", "add", [z, ctx.weight(layer.bias, layer.name + "/bias")], label=label)
    return emit_activation(b, layer.activation, z, layer.name, label, ctx.backend)


def _flatten(b, layer, x, shape, label):
    rank = len(shape)
    if getattr(layer, "data_format", "channels_last") == "channels_first" and rank > 2:
        x = b.add(layer.name + "/channels_last", "permute", [x], label=label, dims=[0, *range(2, rank), 1])
    width = 1
    for d in shape[1:]:
        width *= int(d)
    out = b.add(layer.name, "reshape", [x], label=label, shape=[0, width if rank > 1 else 1])
    return out, (shape[0], width if rank > 1 else 1)


def _resolved(inner: tuple, target: tuple) -> tuple:
    """``target`` with its one ``-1`` worked out from the input's per-row size."""
    if -1 not in target:
        return target
    total = 1
    for d in inner:
        total *= int(d)
    known = 1
    for d in target:
        if d != -1:
            known *= d
    return tuple(total // known if d == -1 else d for d in target)
