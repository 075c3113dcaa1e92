"""The traced train step: the model's own ``train_step`` plus what the trace needs, in one graph.

Why in the graph: a callback sees only the logs. This step calls the model's own
``train_step`` unchanged and additionally returns, from inside the same ``tf.function``,
the weights before and after, the predictions and loss given to ``_compute_loss``, the
gradients given to ``optimizer.apply_gradients``, the optimizer slots, the learning rate,
the iteration count and the batch. The two calls are spied on only while TensorFlow
traces the step (Python runs once), so the arithmetic is the same graph as without
tracing and the weights stay bit-identical.
"""
from __future__ import annotations

from typing import Any, Callable

import keras
import numpy as np
import tensorflow as tf

from ..patch import Patch, set_attr
from .meta import slot_variables

_NAN = float("nan")


def as_numpy(t: Any) -> np.ndarray:
    """A NumPy view of an eager tensor's buffer, without ``.numpy()``'s defensive copy.

    Safe here because every array handed to the recorder is copied by it at once, and
    the tensors are fresh graph outputs nobody else writes to.
    """
    view = getattr(t, "_numpy", None)
    return view() if view is not None else np.asarray(t)


def traced_step(model: keras.Model, variables: list, names: list[str], opt_name: str,
                keep_slots: Callable[[list], None], summary: bool = False) -> Callable:
    """The model's own ``train_step`` plus the values the trace needs, as graph outputs.

    ``keep_slots`` receives the optimizer's slot variables when the step is traced (Keras
    builds the optimizer then). With ``summary`` only per-parameter norms (value, update,
    gradient) come out.
    """
    opt = model.optimizer
    train_step = model.train_step
    unpack = keras.utils.unpack_x_y_sample_weight

    def step(data):
        lr = opt.learning_rate
        lr = tf.cast(tf.convert_to_tensor(lr() if callable(lr) else lr), tf.float64)
        before = [tf.identity(v.value) for v in variables]
        logs, cap = _spied_train_step(model, opt, train_step, data)
        after = [tf.identity(v.value) for v in variables]
        slots = slot_variables(opt, opt_name, variables, names)
        keep_slots(slots)
        grads = _gradients(variables, cap)
        extras = {"lr": lr, "iterations": tf.identity(opt.iterations.value)}
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


def _spied_train_step(model, opt, train_step, data):
    """Run ``train_step`` with ``_compute_loss`` and ``apply_gradients`` spied on:
    ``(logs, {"y_pred", "loss", "grads": {id(variable): gradient}})``."""
    cap = {}
    compute_loss = model._compute_loss
    apply_gradients = opt.apply_gradients

    def spy_loss(*args, **kwargs):
        loss = compute_loss(*args, **kwargs)
        cap["y_pred"] = kwargs.get("y_pred", args[2] if len(args) > 2 else None)
        cap["loss"] = loss
        return loss

    def spy_apply(grads_and_vars, *args, **kwargs):
        grads_and_vars = list(grads_and_vars)
        cap["grads"] = {id(v): g for g, v in grads_and_vars}
        return apply_gradients(grads_and_vars, *args, **kwargs)

    with Patch() as spies:
        spies.add(set_attr(model, "_compute_loss", spy_loss))
        spies.add(set_attr(opt, "apply_gradients", spy_apply))
        logs = train_step(data)
    return logs, cap


def _gradients(variables, cap):
    """One dense gradient per variable (NaN where the optimizer got none)."""
    grads = []
    for v in variables:
        g = cap.get("grads", {}).get(id(v))
        if g is None:
            g = tf.fill(tf.shape(v.value), tf.constant(_NAN, v.value.dtype))
        elif isinstance(g, tf.IndexedSlices):
            g = tf.convert_to_tensor(g)
        grads.append(g)
    return grads


def _norms(before, after, grads):
    """Per-step norms computed in the graph: no weight leaves TensorFlow."""
    def norm(t):
        return tf.norm(tf.reshape(tf.cast(t, tf.float64), [-1]))
    return tuple(tf.stack([norm(b), norm(a - b), norm(g)]) for b, a, g in zip(before, after, grads))
