"""The traced TensorFlow step that hands its values out as outputs of the compiled step,
for the one case the rings of :mod:`hooks.keras.step_tf` cannot serve: several replicas
(``tf.distribute``) that are not traced per replica (:mod:`hooks.keras.mirrored` found
them not modelled, "cannot check").

Why: Keras reduces a step's outputs over the replicas (floats averaged, batches joined);
a ring variable written inside each replica would hold one replica's values instead. Such
runs cannot be checked anyway; this keeps what they record as it was.
"""
from __future__ import annotations

from typing import Callable

import keras
import tensorflow as tf

from .meta import slot_variables
from .spies import spied_train_step
from .step_tf import _gradients, learning_rate

__all__ = ["traced_function"]


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


def _norms(before, after, grads):
    """Per-step norms computed in the graph: no weight leaves TensorFlow, and the norms of
    every parameter leave it as one ``(parameters, 3)`` tensor (one host transfer)."""
    def norm(t):
        return tf.norm(tf.reshape(tf.cast(t, tf.float64), [-1]))
    rows = [tf.stack([norm(b), norm(a - b), norm(g)]) for b, a, g in zip(before, after, grads)]
    return tf.stack(rows) if rows else tf.zeros((0, 3), tf.float64)
