"""Where a traced Keras step's time goes: wall, CPU, system time, page faults and context
switches per steady step, for each mode of ``bench/bench_keras.py``.

Why beside the benchmark: the ratios say how much tracing costs, not why. The figures
here say what kind of cost it is - memory touched for the first time shows as minor
faults and system time, threads handing work to each other as voluntary context switches,
and a machine shared with other work as wall time beyond CPU time. ``--fresh`` runs the
first fit of the process too (its recorder gets fresh memory; later fits reuse the pool of
already touched blocks, :mod:`tracer.chunk_pool`).

What it showed on the shared 2-core VM (issue 12), and what was done about each:

- a fresh full capture spent 1.8-2.3 ms of system time per step in transparent-huge-page
  faults that compact memory (few faults, each slow, the process waiting): the recorder's
  pool blocks are advised against huge pages and faulted in 2 MiB ahead
  (:mod:`tracer.chunk_pool`), 0.5-0.6 ms;
- every host read of a ring copied the whole ring (a variable written by ``scatter_update``
  is in TensorFlow's copy-on-read mode): read as a view now (:mod:`hooks.keras.rings`);
- summary capture added 9 voluntary context switches per step (23 against 14 untraced):
  TensorFlow shared each sum of squares over the 128,000-element kernel among its threads;
  summed in pieces now (:mod:`hooks.keras.step_tf`), 15-16.

Run: ``python bench/profile_keras.py [--modes untraced,full,summary] [--epochs 3] [--repeats 2]``
"""
from __future__ import annotations

import argparse
import gc
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_keras as bk  # noqa: E402  (sets up the path and TensorFlow's logging)
import keras  # noqa: E402
import numpy as np  # noqa: E402

from hooks.keras import TraceCallback  # noqa: E402

FIELDS = ("wall", "cpu", "sys", "minflt", "vcsw", "ivcsw")


def _now() -> tuple:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return time.perf_counter(), time.process_time(), r.ru_stime, r.ru_minflt, r.ru_nvcsw, r.ru_nivcsw


class Probe(keras.callbacks.Callback):
    """The counters of :data:`FIELDS` over each epoch."""

    def on_train_begin(self, logs=None):
        self.epochs = []

    def on_epoch_begin(self, epoch, logs=None):
        self._start = _now()

    def on_epoch_end(self, epoch, logs=None):
        self.epochs.append([b - a for a, b in zip(self._start, _now())])


def one_fit(x, y, epochs: int, mode: str) -> np.ndarray:
    """The counters per steady step (epochs after the first) of one fit in ``mode`` (after a
    full garbage collection, as :func:`bench_keras.one_fit`)."""
    gc.collect()
    model, probe = bk.build(), Probe()
    callbacks: list = [probe]
    cb = None
    if mode == "floor":
        callbacks.insert(0, bk.GetWeights())
    elif mode != "untraced":
        cb = TraceCallback(capture="summary" if mode == "summary" else "full", every=10 if mode == "every10" else 1)
        callbacks.insert(0, cb)
    model.fit(x, y, epochs=epochs, batch_size=50, shuffle=True, verbose=0, callbacks=callbacks)
    if cb is not None:
        assert len(cb.trace.steps) == (epochs * 140 if mode != "every10" else epochs * 14)
    return np.array(probe.epochs[1:]).sum(0) / ((epochs - 1) * 140)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--modes", default="untraced,full,summary")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args(argv)
    x, y = bk.data()
    bk.one_fit(x[:500], y[:500], 1, "untraced")             # warm up TensorFlow itself
    print("per steady step: wall, CPU and system ms; minor faults; voluntary and involuntary context switches")
    for r in range(args.repeats):
        for m in args.modes.split(","):
            w, c, s, f, v, i = one_fit(x, y, max(2, args.epochs), m)
            print(f"repeat {r + 1}: {m:9s} wall {1e3 * w:6.3f}  cpu {1e3 * c:6.3f}  sys {1e3 * s:6.3f}  "
                  f"minflt {f:6.1f}  vcsw {v:5.1f}  ivcsw {i:5.1f}", flush=True)


if __name__ == "__main__":
    main()
