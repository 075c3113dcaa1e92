"""Benchmark: cost of TraceCallback on a Keras fit under MirroredStrategy (2 logical CPU
devices), next to the same fit on one device (issue 15).

S4's regression sizes, smaller by default (2000 x 500 rows, ``Dense(256, relu) -> Dense(1)``,
``mse``, ``SGD(0.01)``, global batch 50, 1 epoch = 40 steps): the fit runs untraced and
traced (``capture="full"``), interleaved and repeated, under the strategy and on one device;
the best time of each is kept. Printed: the traced / untraced ratios and whether every traced
fit ended bit-identical to its untraced twin.

    python bench/bench_mirrored.py [--rows 2000] [--repeats 3]
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=2000)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    import numpy as np
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras
    from hooks.keras import TraceCallback
    rng = np.random.default_rng(0)
    x = rng.normal(size=(args.rows, 500)).astype("float32")
    y = (x @ np.full((500, 1), 0.05) + 0.3).astype("float32")
    strategies = {"mirrored": tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]),
                  "one device": tf.distribute.get_strategy()}
    best: dict = {}
    same = True
    for _ in range(args.repeats):
        for label, strategy in strategies.items():
            finals = {}
            for traced in (False, True):
                with strategy.scope():
                    keras.utils.set_random_seed(0)
                    model = keras.Sequential([keras.Input((500,)), keras.layers.Dense(256, activation="relu"),
                                              keras.layers.Dense(1)])
                    model.compile(optimizer=keras.optimizers.SGD(0.01), loss="mse")
                cbs = [TraceCallback()] if traced else []
                t0 = time.perf_counter()
                model.fit(x, y, batch_size=50, epochs=1, shuffle=False, verbose=0, callbacks=cbs)
                if cbs:
                    cbs[0].trace        # the merged trace is built on demand: count it
                dt = time.perf_counter() - t0
                key = (label, traced)
                best[key] = min(best.get(key, dt), dt)
                finals[traced] = model.get_weights()
            same &= all(np.array_equal(a, b) for a, b in zip(finals[False], finals[True]))
    print(f"{'':12} {'untraced s':>11} {'traced s':>9} {'ratio':>6}")
    for label in strategies:
        u, t = best[(label, False)], best[(label, True)]
        print(f"{label:12} {u:11.2f} {t:9.2f} {t / u:6.2f}")
    print("bit-identical:", same)


if __name__ == "__main__":
    main()
