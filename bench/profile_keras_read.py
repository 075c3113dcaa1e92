"""What one host read of the Keras rings costs per step, through the block path
(:meth:`tracer.Recorder.record_steps`, the K batches' rows matched at once) and step by step
(the path before it: ``record_step`` and ``RowMatcher.match`` per step), in one process.

Why: the ring read (copying each step's ~1 MB into the recorder, checking the chain,
matching rows, the steps row) was most of a warm full step's extra cost (issue 12). The
figure here is the wall and CPU time spent inside ``TraceCallback._read_rings`` per steady
step (epochs after the first), interleaved ``--repeats`` times; ``--profile`` also prints
cProfile's top functions of one steady epoch of each path.

What it showed (issue 12, 2-core shared VM, load 1.0, 11:40 UTC, ``--epochs 2 --repeats 3``):
warm fits, step by step 0.400 ms per step, blocks 0.316 (the first fit of the process, on
fresh memory, step by step: 0.69-0.83). cProfile of a warm block read, per step (under the
profiler, 0.44 ms in all): copies into the recorder 0.10 ms (K rows per parameter, memory
bound), the chain comparison 0.05, row matching 0.11 (hash, lookup and the byte-for-byte
check of ~100 KB of rows), TensorFlow's ring views 0.03, the rest per-step Python (each
step's scalars, logs and steps-table row). Full capture's steady ratio in
``bench_keras.py --epochs 2 --repeats 2`` right after: 1.47x wall, 1.48x CPU.

Run: ``python bench/profile_keras_read.py [--epochs 3] [--repeats 3] [--profile]``
"""
from __future__ import annotations

import argparse
import cProfile
import gc
import pstats
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_keras as bk  # noqa: E402  (sets up the path and TensorFlow's logging)

from hooks.keras import TraceCallback  # noqa: E402
from hooks.keras import callback as kcb  # noqa: E402
from hooks.rows import RowMatcher  # noqa: E402
from tracer import step_block  # noqa: E402


def one_fit(x, y, epochs: int, blocks: bool, profile: bool) -> tuple[float, float]:
    """(wall, CPU) seconds inside ring reads per steady step of one full-capture fit."""
    gc.collect()
    spent = {"wall": 0.0, "cpu": 0.0, "on": False}
    real_read, real_fits = kcb.TraceRecording._read_rings, step_block._block_fits
    prof = cProfile.Profile() if profile else None

    def timed(self):
        w, c = time.perf_counter(), time.process_time()
        if spent["on"] and prof is not None:
            prof.enable()
        real_read(self)
        if prof is not None:
            prof.disable()
        if spent["on"]:
            spent["wall"] += time.perf_counter() - w
            spent["cpu"] += time.process_time() - c

    class Steady(bk.keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            spent["on"] = epoch > 0

    real_match = RowMatcher.match_batches
    kcb.TraceRecording._read_rings = timed
    step_block._block_fits = real_fits if blocks else (lambda *a: False)
    RowMatcher.match_batches = real_match if blocks else (lambda *a: None)
    try:
        model, cb = bk.build(), TraceCallback(capture="full")
        model.fit(x, y, epochs=epochs, batch_size=50, shuffle=True, verbose=0, callbacks=[cb, Steady()])
    finally:
        kcb.TraceRecording._read_rings, step_block._block_fits = real_read, real_fits
        RowMatcher.match_batches = real_match
    if prof is not None:
        print(f"--- cProfile of the steady ring reads, {'blocks' if blocks else 'step by step'}")
        pstats.Stats(prof).sort_stats("tottime").print_stats(12)
    steps = (epochs - 1) * 140
    return spent["wall"] / steps, spent["cpu"] / steps


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--profile", action="store_true")
    args = ap.parse_args(argv)
    x, y = bk.data()
    bk.one_fit(x[:500], y[:500], 1, "untraced")             # warm up TensorFlow itself
    best: dict = {}
    for r in range(args.repeats):
        for blocks in (False, True):
            w, c = one_fit(x, y, max(2, args.epochs), blocks, args.profile and r == args.repeats - 1)
            name = "blocks" if blocks else "steps"
            best[name] = min(best.get(name, (9, 9)), (w, c))
            print(f"repeat {r + 1}: {name:6s} ring read per step: wall {1e3 * w:6.3f} ms  cpu {1e3 * c:6.3f} ms",
                  flush=True)
    print(f"best: steps wall {1e3 * best['steps'][0]:.3f} cpu {1e3 * best['steps'][1]:.3f} ms; blocks wall "
          f"{1e3 * best['blocks'][0]:.3f} cpu {1e3 * best['blocks'][1]:.3f} ms per step")


if __name__ == "__main__":
    main()
