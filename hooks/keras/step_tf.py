"""The traced train step on TensorFlow: the model's own ``train_step`` plus what the trace
needs, in one graph.

Why in the graph: a callback sees only the logs. This step calls the model's own
``train_step`` unchanged and additionally copies, inside the same ``tf.function``, the
weights before and after, the predictions and loss given to ``_compute_loss``, the
gradients given to ``optimizer.apply_gradients``, the optimizer slots, the learning rate,
the iteration count, the logs and the batch into persistent ring variables
(:mod:`hooks.keras.rings`), which the host reads once every K steps; the step's outputs
are Keras's own. The two calls are spied on only while TensorFlow traces the step (Python
runs once), so the arithmetic is the same graph as without tracing and the weights stay
bit-identical.
"""
from __future__ import annotations

from typing import Callable

import keras
import tensorflow as tf

from .meta import slot_variables
from .rings import StepRings
from .spies import spied_train_step

__all__ = ["traced_function"]

_NAN = float("nan")


def traced_function(model: keras.Model, variables: list, names: list[str], opt_name: str, seen: dict,
                    rings: StepRings, summary: bool = False) -> Callable:
    """Keras's own compiled train function around :func:`traced_step`: called with the
    iterator ``fit`` hands its train function, returns Keras's logs (the trace's values
    are in ``rings``)."""
    return model._make_function(traced_step(model, variables, names, opt_name, seen, rings, summary))


def traced_step(model: keras.Model, variables: list, names: list[str], opt_name: str, seen: dict,
                rings: StepRings, summary: bool = False) -> Callable:
    """The model's own ``train_step``, writing the values the trace needs into ``rings``.

    Row ``scalars`` holds, in the order of ``seen["scalars"]``: the learning rate, the
    optimizer's iteration count, the loss, the batch size, every logged value
    (``log/<name>``) and, with ``summary``, each parameter's value, update and gradient
    norms. Full capture adds rings ``before/i``, ``after/i``, ``grad/i``, ``slot/j`` and
    the samples ``x``, ``y``, ``y_pred``. ``seen`` also receives, when the step is traced
    (Keras builds the optimizer then), the optimizer's slot variables (``slots``) and what
    the spies saw (see :func:`hooks.keras.spies.spied_train_step`).
    """
    opt = model.optimizer
    train_step = model.train_step
    unpack = keras.utils.unpack_x_y_sample_weight

    def step(data):
        slot = rings.begin()
        lr = learning_rate(opt)
        if summary:
            before = [rings.keep(f"before/{i}", v.value) for i, v in enumerate(variables)]
        else:
            for i, v in enumerate(variables):
                rings.put(slot, f"before/{i}", v.value)
        logs, cap = spied_train_step(model, opt, train_step, data, "apply_gradients", seen)
        slots = seen["slots"] = slot_variables(opt, opt_name, variables, names)
        grads = _gradients(variables, cap, opt.loss_scale_factor)
        iterations = opt.iterations          # a tensor, not a variable, with gradient accumulation
        x, y, _ = unpack(data)
        first = next((t for t in tf.nest.flatten(x) if t is not None), None)
        scalars = {"lr": lr, "iterations": getattr(iterations, "value", iterations),
                   "loss": _NAN if cap.get("loss") is None else cap["loss"], "batch_size": _NAN if first is None else tf.shape(first)[0]}
        scalars.update(_log_scalars(logs))
        columns, parts = list(scalars), [tf.stack([_first(v) for v in scalars.values()])]
        if summary:
            norm_names, norms = _norms(before, variables, grads)
            columns, parts = columns + norm_names, parts + [norms]
        seen["scalars"] = columns
        rings.put(slot, "scalars", tf.concat(parts, 0) if len(parts) > 1 else parts[0])
        if not summary:
            for i, (v, g) in enumerate(zip(variables, grads)):
                rings.put(slot, f"after/{i}", v.value)
                rings.put(slot, f"grad/{i}", g)
            for j, (_, _, s) in enumerate(slots):
                rings.put(slot, f"slot/{j}", s.value)
            y_pred = cap.get("y_pred")
            if isinstance(y_pred, tf.Tensor):
                rings.put_sample(slot, "y_pred", y_pred)
            if isinstance(x, tf.Tensor) and isinstance(y, tf.Tensor):
                rings.put_sample(slot, "x", x)
                rings.put_sample(slot, "y", y)
        rings.end()
        return logs

    return step


def _first(value) -> tf.Tensor:
    """A value as one float64 number: its first element, NaN when it has none."""
    value = tf.convert_to_tensor(value)
    if value.shape.rank == 0:
        return value if value.dtype == tf.float64 else tf.cast(value, tf.float64)
    flat = tf.reshape(tf.cast(value, tf.float64), [-1])
    return tf.concat([flat, tf.constant([_NAN], tf.float64)], 0)[0]


def _log_scalars(logs) -> dict:
    """Keras's logs of the step as ``log/<name>`` numbers (what ``pythonify_logs`` would
    make of them on the host); values that are not numbers are left out."""
    out = {}
    for key, value in (logs or {}).items():
        try:
            out["log/" + str(key)] = _first(value)
        except (TypeError, ValueError):   # a string or a structure: not a steps column
            continue
    return out


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


#: elements one in-graph sum of squares covers at most: TensorFlow shares a larger sum
#: among its threads, and on a busy CPU the hand-offs cost more than the sum (measured on
#: the bench's 500x256 kernel: one L2Loss over it ~0.1 ms more than an empty step, four
#: over 32,000 elements each ~0.05 ms)
SUM_CHUNK = 32768


def _pieces(t: tf.Tensor) -> list:
    """``t`` flattened, in pieces of at most :data:`SUM_CHUNK` elements (the whole tensor
    when it is small or its size is not known when the step is traced)."""
    t = t if t.dtype in (tf.float32, tf.float64) else tf.cast(t, tf.float32)
    n = t.shape.num_elements()
    if n is None or n <= SUM_CHUNK:
        return [t]
    k = -(-n // SUM_CHUNK)
    return tf.split(tf.reshape(t, [-1]), [n // k + (1 if i < n % k else 0) for i in range(k)])


def _half_square(pieces: list) -> tf.Tensor:
    """Half the sum of squares of the pieces: one ``L2Loss`` kernel each, in their precision."""
    sums = [tf.nn.l2_loss(p) for p in pieces]
    return sums[0] if len(sums) == 1 else tf.add_n(sums)


def _norms(before: list, variables: list, grads: list) -> tuple[list[str], tf.Tensor]:
    """Each parameter's value, update and gradient norms, as ``value/i``, ``update/i``,
    ``grad/i``: ``L2Loss`` kernels in the tensor's precision (float32 for 16-bit types),
    each over at most :data:`SUM_CHUNK` elements (no thread hand-offs), then one float64
    square root for all of them. No copy of a weight is allocated per step: the pieces
    are views, and the update is subtracted piece by piece."""
    names, sums = [], []
    for i, (b, v, g) in enumerate(zip(before, variables, grads)):
        pb, pv = _pieces(b.value()), _pieces(v.value)
        names += [f"value/{i}", f"update/{i}", f"grad/{i}"]
        sums += [_half_square(pb), _half_square([a - c for a, c in zip(pv, pb)]), _half_square(_pieces(g))]
    if not sums:
        return [], tf.zeros((0,), tf.float64)
    return names, tf.sqrt(2.0 * tf.cast(tf.stack(sums), tf.float64))
