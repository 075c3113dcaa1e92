"""The traced train step under ``tf.distribute.MirroredStrategy``: every replica's values,
before Keras reduces them.

Why a train function of its own: Keras's ``_make_function`` runs the step in every replica
(``strategy.run``) and then averages its outputs over the replicas
(``reduce_per_replica(..., "auto")``, a mean). That is right for the logs and wrong for a
trace: the mean of two replicas' batches is nobody's batch, and the mean of their
gradients is not what either computed. This module builds the same function for
``steps_per_execution=1`` - ``strategy.run`` of the model's own ``train_step`` (spied on
as :mod:`hooks.keras.step_tf` does), the logs reduced exactly as Keras reduces them - but
hands the trace's extras back replica by replica
(``strategy.experimental_local_results``). The arithmetic of the step is Keras's own
graph, so weights and logs stay bit-identical. The spies are installed once around
``strategy.run`` (not per replica, as :mod:`hooks.keras.spies` would): see
:func:`_replica_spies`.

What each replica hands back, besides :func:`hooks.keras.step_tf.traced_step`'s values:

- ``grads``: the gradient the optimizer applied, i.e. the *reduced* one, read where Keras
  sums the replicas' gradients (``optimizer._all_reduce_sum_gradients``);
- ``local_grads``: the replica's own gradient before that sum, unscaled. Keras divides a
  mean-reduced loss by the number of replicas inside each replica
  (``scale_loss_for_distribution``) so that the *sum* of the replicas' gradients is the
  global batch's mean; the replica's own gradient is the one it handed the optimizer times
  the number of replicas (Keras's ``unscale_loss_for_distribution``, which its loss tracker
  applies to the loss). ``loss`` is unscaled the same way: the replica's own batch loss.
"""
from __future__ import annotations

import contextlib
import threading
from typing import Callable

import keras
import tensorflow as tf

from ..patch import Patch, set_attr
from .meta import slot_variables
from .step_tf import _gradients, learning_rate

__all__ = ["mirrored_function"]


def mirrored_function(model: keras.Model, variables: list, names: list[str], opt_name: str,
                      seen: dict, summary: bool = False) -> Callable:
    """Keras's train function for ``steps_per_execution=1`` around a per-replica traced step:
    called with the iterator ``fit`` hands it, returns ``(logs, extras)`` where every extra is
    a tuple with one value per replica (full capture only: ``summary`` must be False)."""
    if summary:
        raise ValueError("mirrored_function: summary capture is not traced per replica")
    from keras.src.backend.tensorflow.trainer import reduce_per_replica

    strategy = model.distribute_strategy
    caps: dict = {}
    step = _replica_step(model, variables, names, opt_name, seen, caps)

    @tf.autograph.experimental.do_not_convert
    def one_step_on_data(data):
        caps.clear()
        with _replica_spies(model, model.optimizer, variables, caps, seen):
            logs, extras = strategy.run(step, args=(data,))
        logs = reduce_per_replica(logs, strategy, reduction="auto")     # as Keras's _make_function
        extras = tf.nest.map_structure(lambda v: tuple(strategy.experimental_local_results(v)), extras)
        return logs, extras

    if not model.run_eagerly:
        one_step_on_data = tf.function(one_step_on_data, reduce_retracing=True, jit_compile=model.jit_compile)
    one_step_on_data = model._autoconvert_optionals(one_step_on_data)

    @tf.autograph.experimental.do_not_convert
    def on_iterator(iterator):
        return tf.experimental.Optional.from_value(one_step_on_data(iterator.get_next()))

    if not model.run_eagerly:
        on_iterator = tf.function(on_iterator, reduce_retracing=True)

    def function(iterator):
        if isinstance(iterator, (tf.data.Iterator, tf.distribute.DistributedIterator)):
            opt_outputs = on_iterator(iterator)
            if not opt_outputs.has_value():
                raise StopIteration
            return opt_outputs.get_value()
        for data in iterator:           # train_on_batch: a generator of one batch
            return one_step_on_data(data)
        raise StopIteration

    return function


def _replica_step(model, variables, names, opt_name, seen, caps: dict) -> Callable:
    """The model's own ``train_step`` in one replica plus that replica's values (as
    :func:`hooks.keras.step_tf.traced_step`, with the reduced gradient and the unscaled local ones)."""
    from keras.src.losses.loss import unscale_loss_for_distribution

    opt = model.optimizer
    train_step = model.train_step
    unpack = keras.utils.unpack_x_y_sample_weight

    def step(data):
        lr = learning_rate(opt)
        before = [tf.identity(v.value) for v in variables]
        logs = train_step(data)
        cap = caps.get(threading.get_ident(), {})
        after = [tf.identity(v.value) for v in variables]
        slots = slot_variables(opt, opt_name, variables, names)
        seen["slots"] = slots
        replicas = tf.distribute.get_replica_context().num_replicas_in_sync
        local = _gradients(variables, cap, opt.loss_scale_factor)
        iterations = opt.iterations
        extras = {"lr": lr, "iterations": tf.identity(getattr(iterations, "value", iterations)),
                  "before": tuple(before), "after": tuple(after),
                  "grads": tuple(_gradients(variables, {"grads": cap.get("reduced", {})})),  # unscaled before the sum
                  "local_grads": tuple(g * tf.cast(replicas, g.dtype) for g in local),
                  "slots": tuple(tf.identity(s.value) for _, _, s in slots)}
        if cap.get("loss") is not None:
            extras["loss"] = tf.cast(unscale_loss_for_distribution(cap["loss"]), tf.float64)
        if isinstance(cap.get("y_pred"), tf.Tensor):
            extras["y_pred"] = cap["y_pred"]
        x, y, _ = unpack(data)
        if isinstance(x, tf.Tensor) and isinstance(y, tf.Tensor):
            extras["x"], extras["y"] = x, y
        return logs, extras

    return step


@contextlib.contextmanager
def _replica_spies(model, opt, variables, caps: dict, seen: dict):
    """While the step is traced: ``_compute_loss``, ``apply_gradients`` and the optimizer's
    cross-replica sum spied on once for all replicas, each replica's values kept under its
    thread (MirroredStrategy runs every replica's Python in a thread of its own, one after the
    other up to each cross-replica call, so a spy installed per replica would see - and
    leave behind - the other replicas')."""
    compute_loss, apply, reduce = model._compute_loss, opt.apply_gradients, opt._all_reduce_sum_gradients
    by_tf = {id(getattr(v, "value", v)): v for v in variables}

    def mine() -> dict:
        return caps.setdefault(threading.get_ident(), {})

    def spy_loss(*args, **kwargs):
        loss = compute_loss(*args, **kwargs)
        cap = mine()
        cap["y_pred"] = kwargs.get("y_pred", args[2] if len(args) > 2 else None)
        cap["loss"] = loss
        if "n_losses" not in seen:
            seen["sample_weight"] = kwargs.get("sample_weight", args[3] if len(args) > 3 else None) is not None
            seen["n_losses"] = len(model.losses)
        return loss

    def spy_apply(grads_and_vars, *args, **kwargs):
        pairs = list(grads_and_vars)
        mine()["grads"] = {id(v): g for g, v in pairs}
        return apply(pairs, *args, **kwargs)

    def spy_reduce(grads_and_vars):
        pairs = list(reduce(grads_and_vars))
        got = mine().setdefault("reduced", {})
        for g, v in pairs:
            if g is not None and id(v) in by_tf:
                got[id(by_tf[id(v)])] = g
        return pairs

    with Patch() as spies:
        spies.add(set_attr(model, "_compute_loss", spy_loss))
        spies.add(set_attr(opt, "apply_gradients", spy_apply))
        spies.add(set_attr(opt, "_all_reduce_sum_gradients", spy_reduce))
        yield
