"""Benchmark: what TraceCallback costs on S4's MLP in Keras.

500 -> 256 (relu) -> 1 Dense MLP, 7000 rows, batch 50 (140 steps per epoch), SGD,
mse, compiled mode. In one process, untraced and traced fits alternate (untraced
first), each on a fresh model with the same seed; medians over the repeats.

Prints two ratios:
- ``traced/untraced fit time ratio``: whole ``model.fit`` calls (includes building
  and tracing the step function, which the callback does once more per fit);
- ``traced/untraced steady-state step time ratio``: epochs after the first only.

Run: ``python bench/bench_keras.py [--epochs 3] [--repeats 3] [--capture full] [--every 1]``
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import keras  # noqa: E402
import numpy as np  # noqa: E402

from hooks.keras import TraceCallback  # noqa: E402


class EpochTimer(keras.callbacks.Callback):
    """Wall time of each epoch (steady state = epochs after the first)."""

    def on_epoch_begin(self, epoch, logs=None):
        self._t = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.times.append(time.perf_counter() - self._t)

    def on_train_begin(self, logs=None):
        self.times = []


def data(n_train=7000, features=500, seed=4):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(10000, features)).astype(np.float32)
    y = (x @ np.full((features, 1), 0.0056) + 0.028 + 0.01 * rng.normal(size=(10000, 1))).astype(np.float32)
    return x[:n_train], y[:n_train]


def build(seed=0):
    keras.utils.set_random_seed(seed)
    init = keras.initializers.RandomNormal(stddev=0.01)
    model = keras.Sequential([keras.Input((500,)),
                              keras.layers.Dense(256, activation="relu", kernel_initializer=init),
                              keras.layers.Dense(1, kernel_initializer=init)])
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.01), loss="mse")
    return model


def one_fit(x, y, epochs, traced, capture, every=1):
    model = build()
    timer = EpochTimer()
    callbacks = [timer]
    cb = None
    if traced:
        cb = TraceCallback(capture=capture, every=every)
        callbacks.insert(0, cb)
    t0 = time.perf_counter()
    model.fit(x, y, epochs=epochs, batch_size=50, shuffle=True, verbose=0, callbacks=callbacks)
    total = time.perf_counter() - t0
    steady = sum(timer.times[1:]) if len(timer.times) > 1 else total
    steps = len(cb.trace.steps) if cb is not None else None
    weights = model.get_weights()
    del cb, model
    return total, steady, steps, weights


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--capture", default="full", choices=["full", "summary"])
    ap.add_argument("--every", type=int, default=1, help="record one step in EVERY")
    ap.add_argument("--breakdown", action="store_true",
                    help="also time the hook alone (Recorder.record_step stubbed out)")
    args = ap.parse_args(argv)
    x, y = data()
    one_fit(x[:500], y[:500], 1, False, args.capture)          # warm up TensorFlow itself
    plain, traced, plain_steady, traced_steady = [], [], [], []
    for r in range(args.repeats):
        t, s, _, w0 = one_fit(x, y, args.epochs, False, args.capture)
        plain.append(t)
        plain_steady.append(s)
        t, s, n, w1 = one_fit(x, y, args.epochs, True, args.capture, args.every)
        traced.append(t)
        traced_steady.append(s)
        same = all(a.tobytes() == b.tobytes() for a, b in zip(w0, w1))
        print(f"repeat {r + 1}: untraced {plain[-1]:.3f} s, traced {traced[-1]:.3f} s "
              f"({n} steps recorded, weights bit-identical: {same})", flush=True)
    hook_only = []
    if args.breakdown:
        from tracer.recorder import Recorder
        real = Recorder.record_step
        Recorder.record_step = lambda self, **kw: None
        try:
            for _ in range(args.repeats):
                hook_only.append(one_fit(x, y, args.epochs, True, args.capture, args.every)[1])
        finally:
            Recorder.record_step = real
    steps = args.epochs * 140
    mp, mt = statistics.median(plain), statistics.median(traced)
    sp, st = statistics.median(plain_steady), statistics.median(traced_steady)
    steady_steps = (args.epochs - 1) * 140 if args.epochs > 1 else steps
    print(f"MLP 500-256-1, 7000 rows, batch 50, {args.epochs} epochs ({steps} steps), capture={args.capture}, every={args.every}, "
          f"median of {args.repeats}")
    print(f"untraced fit {mp:.3f} s ({sp / steady_steps * 1e3:.3f} ms/step steady), "
          f"traced fit {mt:.3f} s ({st / steady_steps * 1e3:.3f} ms/step steady)")
    print(f"traced/untraced fit time ratio: {mt / mp:.2f}")
    print(f"traced/untraced steady-state step time ratio: {st / sp:.2f}")
    if hook_only:
        print(f"hook alone (recorder stubbed) steady-state step time ratio: "
              f"{statistics.median(hook_only) / sp:.2f}")


if __name__ == "__main__":
    main()
