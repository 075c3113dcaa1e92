"""Keras ``MirroredStrategy`` fits over two logical CPU devices for the distributed tests (issue 15).

Run as a script in a fresh process (``python tests/_mirrored_jobs.py OUT``): TensorFlow
splits the CPU into two logical devices only before it first uses a device, which a test
process that already ran Keras cannot undo. Every variant trains the same small regression
(40 rows x 3 features, ``Dense(4, relu) -> Dense(1)``, ``mse``, SGD(0.05), global batch 10, 2
epochs, ``shuffle=False``: 4 steps per epoch, 5 rows per replica) built and compiled in
``strategy.scope()``:

- ``clean_plain``: untraced, for the bit-identity test; ``clean``: the same, traced;
- ``uneven`` (clean): the first ``UNEVEN_ROWS`` rows only, so each epoch's last batch (5 rows)
  splits 3 / 2 over the replicas;
- ``modify``: a callback scales replica 1's copy of the first kernel by 0.9 after step
  ``BUG_STEP`` (the replicas then train different models);
- ``one_replica``: Keras's ``train_step`` with one change, every replica's gradient but
  replica 0's zeroed before ``apply_gradients`` (the update sees one replica's half of the
  batch);
- ``unscaled``: ``compute_loss`` overridden with a plain mean that skips Keras's division
  by the number of replicas (the classic distributed-loss scaling bug: the summed gradient
  is twice the global batch's);
- ``clipnorm``: the clean model with ``SGD(clipnorm=1.0)``, which is not modelled ("cannot check").

For each variant ``OUT/<variant>/`` gets ``final.npz`` (the weights after ``fit``), ``logs.json``
(``fit``'s history) and, traced, ``run/rank=R/`` (each replica's trace) and ``trace/`` (the
callback's merged trace).
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
VARIANTS = ("clean_plain", "clean", "uneven", "modify", "one_replica", "unscaled", "clipnorm")
N_ROWS, BATCH, EPOCHS = 40, 10, 2
BUG_STEP = 3
UNEVEN_ROWS = 35


def _data():
    import numpy as np
    rng = np.random.default_rng(0)
    x = rng.normal(size=(N_ROWS, 3)).astype("float32")
    y = (x @ np.array([[1.0], [2.0], [-1.0]]) + 0.5 + 0.1 * rng.normal(size=(N_ROWS, 1))).astype("float32")
    return x, y


def _model(variant: str):
    import keras
    import tensorflow as tf
    from keras import ops

    class OneReplica(keras.Sequential):
        def train_step(self, data):
            x, y = data
            with tf.GradientTape() as tape:
                y_pred = self(x, training=True)
                loss = self._compute_loss(x=x, y=y, y_pred=y_pred, training=True)
                self._loss_tracker.update_state(loss * 2, sample_weight=tf.shape(x)[0])
            grads = tape.gradient(loss, self.trainable_weights)
            ctx = tf.distribute.get_replica_context()
            keep = tf.cast(tf.equal(ctx.replica_id_in_sync_group, 0), grads[0].dtype)
            self.optimizer.apply_gradients(zip([g * keep for g in grads], self.trainable_weights))
            return self.compute_metrics(x, y, y_pred)

    class Unscaled(keras.Sequential):
        def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
            return ops.mean(ops.square(y - y_pred))

    cls = {"one_replica": OneReplica, "unscaled": Unscaled}.get(variant, keras.Sequential)
    keras.utils.set_random_seed(0)
    model = cls([keras.Input((3,)), keras.layers.Dense(4, activation="relu"), keras.layers.Dense(1)])
    opt = keras.optimizers.SGD(0.05, clipnorm=1.0 if variant == "clipnorm" else None)
    model.compile(optimizer=opt, loss="mse")
    return model


def _callbacks(variant: str) -> list:
    import keras

    class ScaleReplica1(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if int(self.model.optimizer.iterations.numpy()) == BUG_STEP:
                part = self.model.layers[0].kernel.value.values[1]     # replica 1's copy only
                part.assign(part * 0.9)
    return [ScaleReplica1()] if variant == "modify" else []


def run(out: Path, variants=VARIANTS) -> None:
    import numpy as np
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from hooks.keras import TraceCallback
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    x, y = _data()
    for variant in variants:
        d = out / variant
        d.mkdir(parents=True, exist_ok=True)
        with strategy.scope():
            model = _model(variant)
        cb = None if variant.endswith("_plain") else TraceCallback()
        n = UNEVEN_ROWS if variant == "uneven" else N_ROWS
        hist = model.fit(x[:n], y[:n], batch_size=BATCH, epochs=EPOCHS, shuffle=False, verbose=0,
                         callbacks=_callbacks(variant) + ([cb] if cb else []))
        np.savez(d / "final.npz", *[np.asarray(w) for w in model.get_weights()])
        (d / "logs.json").write_text(json.dumps({k: [float(v) for v in vs] for k, vs in hist.history.items()}))
        if cb is not None:
            cb.trace.save(d / "trace")
            if cb.replicas is not None:
                cb.replicas.save(d / "run")
            spies = ["_compute_loss" in model.__dict__, "apply_gradients" in model.optimizer.__dict__,
                     "_all_reduce_sum_gradients" in model.optimizer.__dict__]
            (d / "left.json").write_text(json.dumps({"spies_left": spies}))


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    run(Path(sys.argv[1]), tuple(sys.argv[2:]) or VARIANTS)
