"""The traced train step on TensorFlow: the model's own ``train_step`` plus what the trace
needs, in one graph.

Why in the graph: a callback sees only the logs. This step calls the model's own
``train_step`` unchanged and additionally returns, from inside the same ``tf.function``,
the weights before and after, the predictions and loss given to ``_compute_loss``, the
gradients given to ``optimizer.apply_gradients``, the optimizer slots, the learning rate,
the iteration count and the batch. The two calls are spied on only while TensorFlow
traces the step (Python runs once), so the arithmetic is the same graph as without
tracing and the weights stay bit-identical.
"""
from __future__ import annotations

from typing import Callable

import keras
import tensorflow as tf

from .meta import slot_variables
from .spies import spied_train_step

__all__ = ["traced_function"]

_NAN = float("nan")


def traced_function(model: keras.Model, variables: list, names: list[str], opt_name: str, seen: dict,
                    summary: bool = False) -> Callable:
    """Keras's own compiled train function around :func:`traced_step`: called with the
    iterator ``fit`` hands its train function, returns ``(logs, extras)``."""
    return model._make_function(traced_step(model, variables, names, opt_name, seen, summary))


def traced_step(model: keras.Model, variables: list, names: list[str], opt_name: str, seen: dict,
                summary: bool = False) -> Callable:
    """The model's own ``train_step`` plus the values the trace needs, as graph outputs.

    ``seen`` receives, when the step is traced (Keras builds the optimizer then), the
    optimizer's slot variables (``slots``) and what the spies saw (see
    :func:`hooks.keras.spies.spied_train_step`). With ``summary`` only per-parameter
    norms (value, update, gradient) come out.
    """
    opt = model.optimizer
    train_step = model.train_step
    unpack = keras.utils.unpack_x_y_sample_weight

    def step(data):
        lr = learning_rate(opt)
        before = [tf.identity(v.value) for v in variables]
        logs, cap = spied_train_step(model, opt, train_step, data, "apply_gradients", seen)
        after = [tf.identity(v.value) for v in variables]
        slots = slot_variables(opt, opt_name, variables, names)
        seen["slots"] = slots
        grads = _gradients(variables, cap, opt.loss_scale_factor)
        iterations = opt.iterations          # a tensor, not a variable, with gradient accumulation
        extras = {"lr": lr, "iterations": tf.identity(getattr(iterations, "value", iterations))}
        if summary:
            extras["norms"] = _norms(before, after, grads)
        else:
            extras.update({"before": tuple(before), "after": tuple(after), "grads": tuple(grads),
                           "slots": tuple(tf.identity(s.value) for _, _, s in slots)})
        y_pred, loss = cap.get("y_pred"), cap.get("loss")
        if loss is not None:
            extras["loss"] = tf.cast(loss, tf.float64)
        x, y, _ = unpack(data)
        if summary:
            first = next((t for t in tf.nest.flatten(x) if t is not None), None)
            if first is not None:
                extras["batch_size"] = tf.shape(first)[0]
            return logs, extras
        if isinstance(y_pred, tf.Tensor):
            extras["y_pred"] = y_pred
        if isinstance(x, tf.Tensor) and isinstance(y, tf.Tensor):
            extras["x"], extras["y"] = x, y
        return logs, extras

    return step


def learning_rate(opt: keras.optimizers.Optimizer) -> tf.Tensor:
    """The optimizer's learning rate at this step as a float64 tensor (a schedule is called)."""
    lr = opt.learning_rate
    return tf.cast(tf.convert_to_tensor(lr() if callable(lr) else lr), tf.float64)


def _gradients(variables, cap, scale=None):
    """One dense gradient per variable (NaN where the optimizer got none): the gradient of
    the loss, unscaled as the optimizer unscales it (``loss_scale_factor``)."""
    grads = []
    for v in variables:
        g = cap.get("grads", {}).get(id(v))
        if g is None:
            g = tf.fill(tf.shape(v.value), tf.constant(_NAN, v.value.dtype))
        elif isinstance(g, tf.IndexedSlices):
            g = tf.convert_to_tensor(g)
        if scale is not None:
            g = g / scale
        grads.append(g)
    return grads


def _norms(before, after, grads):
    """Per-step norms computed in the graph: no weight leaves TensorFlow, and the norms of
    every parameter leave it as one ``(parameters, 3)`` tensor (one host transfer)."""
    def norm(t):
        return tf.norm(tf.reshape(tf.cast(t, tf.float64), [-1]))
    rows = [tf.stack([norm(b), norm(a - b), norm(g)]) for b, a, g in zip(before, after, grads)]
    return tf.stack(rows) if rows else tf.zeros((0, 3), tf.float64)
