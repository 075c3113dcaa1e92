"""Benchmark: what TraceCallback costs on S4's MLP in Keras, in one process.

500 -> 256 (relu) -> 1 Dense MLP, 7000 rows, batch 50 (140 steps per epoch), SGD, mse,
compiled mode. Modes, interleaved and repeated, each on a fresh model with the same seed:

- ``untraced``: plain ``fit``;
- ``floor``: ``fit`` with a callback calling ``model.get_weights()`` every batch (the
  usual forum workaround, which records far less);
- ``full``, ``summary`` and ``every10`` (full capture of one step in 10) with TraceCallback;
- ``sumfloor``: no steptrace, the norms summary capture keeps computed by hand inside Keras's
  own compiled step (:class:`SumFloorModel`): what summary capture cannot go below.

Printed: the best time of each (whole ``fit`` and steady state: epochs after the first,
in wall time and in the process's CPU time), as ratios against untraced, with the final weights asserted bit-identical.

Run: ``python bench/bench_keras.py [--epochs 2] [--repeats 3] [--modes untraced,full,...]``
"""
from __future__ import annotations

import argparse
import gc
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import keras  # noqa: E402
import numpy as np  # noqa: E402

from hooks.keras import TraceCallback  # noqa: E402
from hooks.keras.step_tf import _norms  # noqa: E402


class EpochTimer(keras.callbacks.Callback):
    """Wall and process CPU time of each epoch (steady state = epochs after the first).

    Why CPU time too: on a shared machine the wall time of an epoch depends on what else
    runs; the process's CPU time (all its threads) depends much less on it."""

    def on_epoch_begin(self, epoch, logs=None):
        self._t, self._c = time.perf_counter(), time.process_time()

    def on_epoch_end(self, epoch, logs=None):
        self.times.append(time.perf_counter() - self._t)
        self.cpu.append(time.process_time() - self._c)

    def on_train_begin(self, logs=None):
        self.times, self.cpu = [], []


def data(n_train=7000, features=500, seed=4):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(10000, features)).astype(np.float32)
    y = (x @ np.full((features, 1), 0.0056) + 0.028 + 0.01 * rng.normal(size=(10000, 1))).astype(np.float32)
    return x[:n_train], y[:n_train]


class SumFloorModel(keras.Sequential):
    """Summary capture's own floor: Keras's TensorFlow ``train_step`` (its code, unchanged)
    plus, done by hand inside the compiled step, only the arithmetic summary capture keeps -
    each weight copied into a reused variable before the update, the norms of the values,
    the gradients and ``after - before`` (summary capture's own arithmetic,
    :func:`hooks.keras.step_tf._norms`: the fastest found) written into one variable, read
    by nobody: no rings, no host read, no recorder - no recording can do less."""

    def train_step(self, data):
        import tensorflow as tf
        from keras.src import tree
        from keras.src.trainers.data_adapters import data_adapter_utils
        x, y, sample_weight = data_adapter_utils.unpack_x_y_sample_weight(data)
        weights = self.trainable_weights
        if not hasattr(self, "_kept"):
            with tf.init_scope():
                self._kept = [tf.Variable(tf.zeros(w.shape, w.dtype), trainable=False) for w in weights]
                self._norms = tf.Variable(tf.zeros(3 * len(weights)), trainable=False)
        for k, w in zip(self._kept, weights):
            k.assign(w.value)
        with tf.GradientTape() as tape:
            y_pred = self(x, training=True)
            loss = self._compute_loss(x=x, y=y, y_pred=y_pred, sample_weight=sample_weight, training=True)
            self._loss_tracker.update_state(loss, sample_weight=tf.shape(next(i for i in tree.flatten(x)
                                                                              if i is not None))[0])
            loss = self.optimizer.scale_loss(loss)
        gradients = tape.gradient(loss, weights)
        self.optimizer.apply_gradients(zip(gradients, weights))
        self._norms.assign(tf.cast(_norms(self._kept, weights, gradients)[1], tf.float32))
        return self.compute_metrics(x, y, y_pred, sample_weight=sample_weight)


def build(seed=0, cls=keras.Sequential):
    keras.utils.set_random_seed(seed)
    init = keras.initializers.RandomNormal(stddev=0.01)
    model = cls([keras.Input((500,)),
                              keras.layers.Dense(256, activation="relu", kernel_initializer=init),
                              keras.layers.Dense(1, kernel_initializer=init)])
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.01), loss="mse")
    return model


class GetWeights(keras.callbacks.Callback):
    """The floor: ``get_weights()`` every batch, kept."""

    def on_train_begin(self, logs=None):
        self.kept = []

    def on_train_batch_end(self, batch, logs=None):
        self.kept.append(self.model.get_weights())


MODES = ("untraced", "floor", "full", "summary", "sumfloor", "every10")


def one_fit(x, y, epochs, mode):
    """One fit in ``mode``; returns (total seconds, steady seconds, steady CPU seconds,
    steps recorded, weights).

    Each fit starts after a full garbage collection, in every mode: the process holds some
    430,000 objects TensorFlow tracks, so one collection of the oldest generation takes
    about 0.3 s (measured here), and one fit's garbage (an earlier model's graph, a dropped
    trace) collected inside another fit's steady epoch (140 steps, 0.2-0.3 s) would double it."""
    gc.collect()
    model = build(cls=SumFloorModel if mode == "sumfloor" else keras.Sequential)
    timer = EpochTimer()
    callbacks = [timer]
    cb = None
    if mode == "floor":
        callbacks.insert(0, GetWeights())
    elif mode not in ("untraced", "sumfloor"):
        cb = TraceCallback(capture="summary" if mode == "summary" else "full", every=10 if mode == "every10" else 1)
        callbacks.insert(0, cb)
    t0 = time.perf_counter()
    model.fit(x, y, epochs=epochs, batch_size=50, shuffle=True, verbose=0, callbacks=callbacks)
    total = time.perf_counter() - t0
    steady = sum(timer.times[1:]) if len(timer.times) > 1 else total
    cpu = sum(timer.cpu[1:]) if len(timer.cpu) > 1 else sum(timer.cpu)
    steps = len(cb.trace.steps) if cb is not None else None
    weights = model.get_weights()
    del cb, model, callbacks
    return total, steady, cpu, steps, weights


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--modes", default=",".join(MODES))
    args = ap.parse_args(argv)
    modes = [m for m in args.modes.split(",") if m]
    assert "untraced" in modes and set(modes) <= set(MODES), modes
    x, y = data()
    one_fit(x[:500], y[:500], 1, "untraced")                  # warm up TensorFlow itself
    best = {m: float("inf") for m in modes}
    steady = {m: float("inf") for m in modes}
    cpu = {m: float("inf") for m in modes}
    finals = {}
    for r in range(args.repeats):
        for m in modes:
            t, s, c, n, w = one_fit(x, y, args.epochs, m)
            best[m], steady[m], cpu[m] = min(best[m], t), min(steady[m], s), min(cpu[m], c)
            finals[m] = w
            print(f"repeat {r + 1}: {m:9s} {t:.3f} s" + (f" ({n} steps recorded)" if n is not None else ""),
                  flush=True)
    same = all(all(a.tobytes() == b.tobytes() for a, b in zip(finals["untraced"], finals[m])) for m in modes)
    assert same, "final weights differ between modes"
    steps = args.epochs * 140
    steady_steps = (args.epochs - 1) * 140 if args.epochs > 1 else steps
    print(f"MLP 500-256-1, 7000 rows, batch 50, {args.epochs} epochs ({steps} steps), best of {args.repeats}")
    for m in modes:
        print(f"  {m:9s} fit {best[m]:7.3f} s {best[m] / best['untraced']:5.2f}x   steady "
              f"{1e3 * steady[m] / steady_steps:6.3f} ms/step {steady[m] / steady['untraced']:5.2f}x   steady CPU "
              f"{1e3 * cpu[m] / steady_steps:6.3f} ms/step {cpu[m] / cpu['untraced']:5.2f}x")
    if "summary" in modes and "sumfloor" in modes:
        print(f"  summary against its floor: steady {steady['summary'] / steady['sumfloor']:5.2f}x   "
              f"steady CPU {cpu['summary'] / cpu['sumfloor']:5.2f}x")
    print(f"  final weights bit-identical: {same}")
    return {"best": best, "steady": steady, "cpu": cpu}


if __name__ == "__main__":
    main()
