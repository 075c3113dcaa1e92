"""Benchmark: checking S4 against training it (time and peak memory), in one process.

One epoch of S4's regression loop (7000 x 500 -> 256 -> 1, batch 50, 140 steps) is
trained untraced and traced (full capture), interleaved, best of N; then the trace
is checked, best of N. Printed: training ms per epoch, check ms, their ratio (wall
clock, and CPU time of this process, steadier on a shared machine), the minor page faults
of the first check and of the later ones, the checker's peak memory (tracemalloc, which
counts NumPy's buffers; measured from nothing kept, so the arena's blocks count) and the
memory its arena keeps for the next check of the trace (:mod:`tracer.program.scratch`)
against the trace's own in-memory size (its arrays' bytes). Training and checking use the
same number of threads (torch, BLAS and numexpr): one by default.

    python bench/bench_checker.py [--repeats 3] [--threads 1] [--profile] [--no-arena] [--drop-kept]

``--profile`` adds a cProfile of one check (the 25 most expensive functions). ``--no-arena``
makes the engine's big arrays plain allocations instead of blocks of the check's arena
(:mod:`tracer.program.scratch`), to compare the first check's cost with and without it.
``--drop-kept`` also times checks that start with the arena's kept blocks dropped
(:func:`tracer.program.scratch.drop_kept`: fresh pages, as before blocks were kept),
interleaved with the ones that reuse them, best of N each.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
import tracemalloc
from pathlib import Path

# the checker runs with as many BLAS threads as training has torch threads (--threads,
# 1 by default): set before NumPy loads OpenBLAS
_threads = next((a.split("=", 1)[1] for a in sys.argv if a.startswith("--threads=")), None)
if _threads is None and "--threads" in sys.argv[:-1]:
    _threads = sys.argv[sys.argv.index("--threads") + 1]
os.environ.setdefault("OPENBLAS_NUM_THREADS", _threads or "1")

try:                       # not a steptrace dependency any more; pandas uses it when present
    import numexpr  # noqa: E402
except ImportError:
    numexpr = None
import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import tracer  # noqa: E402
from bench_torch import make_data, run  # noqa: E402
from hooks.torch import trace_torch  # noqa: E402
from tracer.program.scratch import drop_kept, kept_bytes  # noqa: E402


def trace_bytes(trace) -> int:
    """Bytes of the arrays a trace holds in memory (memory shared by several arrays, such
    as a recording's chained before/after views, counted once)."""
    a = trace.arrays()
    arrays = [v for p in a.params.values() for v in (p.before, p.grad, p.after) if isinstance(v, np.ndarray)]
    arrays += [v for p in a.params.values() for v in p.slots.values()]
    arrays += [v for v in (a.inputs, a.targets, a.sample_pred, a.sample_step, a.sample_row, a.param_step)
               if v is not None]
    spans = sorted((v.__array_interface__["data"][0], v.__array_interface__["data"][0] + v.nbytes)
                   for v in arrays if v.nbytes)
    total, end = 0, 0
    for lo, hi in spans:                      # the union of the byte ranges
        if hi > end:
            total += hi - max(lo, end)
            end = hi
    return total


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--profile", action="store_true", help="cProfile one check")
    ap.add_argument("--no-arena", action="store_true",
                    help="the engine's arrays as plain allocations, not from the check's arena (to compare)")
    ap.add_argument("--drop-kept", action="store_true",
                    help="also time checks with the arena's kept blocks dropped first, interleaved (to compare)")
    args = ap.parse_args(argv)
    if args.no_arena:
        import tracer.program.scratch as scratch
        scratch.ARENA_MIN = 1 << 62
    torch.set_num_threads(args.threads)
    if numexpr is not None:
        numexpr.set_num_threads(args.threads)
    x, y = make_data()
    run(contextlib.nullcontext, x, y, 1)
    train, train_cpu = float("inf"), float("inf")
    trace = None
    for _ in range(args.repeats):
        c0 = time.process_time()
        seconds, steps, _, _ = run(contextlib.nullcontext, x, y, 1)
        train, train_cpu = min(train, seconds), min(train_cpu, time.process_time() - c0)
        _, _, _, trace = run(lambda: trace_torch(capture="full"), x, y, 1)
    best, best_cpu, report, faults, cpus = float("inf"), float("inf"), None, [], []
    dropped = [float("inf"), float("inf"), []]          # cpu, wall, faults of checks from dropped blocks
    for _ in range(args.repeats):
        t0, c0, f0 = time.perf_counter(), time.process_time(), _minor_faults()
        report = tracer.check(trace)
        cpus.append(time.process_time() - c0)
        best, best_cpu = min(best, time.perf_counter() - t0), min(best_cpu, cpus[-1])
        faults.append(_minor_faults() - f0)
        if args.drop_kept and len(cpus) > 1:
            _dropped_check(trace, dropped)
    kept = kept_bytes()
    drop_kept()             # the peak of a check from nothing kept: its blocks count in it
    tracemalloc.start()
    tracer.check(trace)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    size = trace_bytes(trace)
    print(f"S4 one epoch: {trace.n_steps} steps, best of {args.repeats}, {args.threads} thread(s) for training "
          "and checking (torch, BLAS, numexpr)")
    print(f"  training (untraced)  {1e3 * train:8.1f} ms   cpu {1e3 * train_cpu:8.1f} ms")
    print(f"  check                {1e3 * best:8.1f} ms   cpu {1e3 * best_cpu:8.1f} ms   "
          f"ratio check/train {best / train:.2f} (cpu {best_cpu / train_cpu:.2f})")
    print(f"  trace in memory      {size / 2**20:8.1f} MB")
    print(f"  check peak memory    {peak / 2**20:8.1f} MB   ratio {peak / size:.2f}")
    print(f"  kept after a check   {kept / 2**20:8.1f} MB   ratio {kept / size:.2f}   (the arena's blocks, "
          "for the next check of this trace)")
    print(f"  minor page faults    first check {faults[0]}, later ones {min(faults[1:], default=faults[0])} "
          "(fresh memory's first touch, about 4 KiB each)")
    if dropped[2]:
        print(f"  kept blocks dropped  {1e3 * dropped[1]:8.1f} ms   cpu {1e3 * dropped[0]:8.1f} ms   "
              f"minor page faults {min(dropped[2])}   (each check after drop_kept(), interleaved)")
    print(f"  first check cpu      {1e3 * cpus[0]:8.1f} ms   (the process's first: compiles the program's "
          "functions, fresh memory)")
    print(f"  verdict: {report.verdict}")
    if args.profile:
        _floor(trace, args.repeats)
        _profile(trace)
    return {"train_s": train, "check_s": best, "train_cpu_s": train_cpu, "check_cpu_s": best_cpu,
            "first_check_cpu_s": cpus[0], "kept_bytes": kept,
            "trace_bytes": size, "check_peak_bytes": peak}


def _dropped_check(trace, dropped: list) -> None:
    """One check after :func:`drop_kept` (fresh blocks, as before they were kept): the best
    cpu and wall time and the faults into ``dropped``."""
    drop_kept()
    t0, c0, f0 = time.perf_counter(), time.process_time(), _minor_faults()
    tracer.check(trace)
    dropped[0] = min(dropped[0], time.process_time() - c0)
    dropped[1] = min(dropped[1], time.perf_counter() - t0)
    dropped[2].append(_minor_faults() - f0)


def _minor_faults() -> int:
    """This process's minor page faults so far (0 where ``resource`` is missing)."""
    try:
        import resource
    except ImportError:
        return 0
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def _floor(trace, repeats: int) -> None:
    """CPU time of the recomputation alone (the step program's values and gradients of every
    step, then its rounding magnitudes and their lower bound, docs/TOLERANCES.md): what any
    check of these numbers costs at least."""
    from tracer.checker.core import CHUNK_BYTES, _bytes_per_step
    from tracer.checker.feed import chunks, leaves, step_groups
    from tracer.checker.resolve import resolve_program
    from tracer.program import Evaluation
    program = resolve_program(trace).program
    arrays = trace.arrays()
    groups = step_groups(arrays, needs_rows=bool(program.inputs))
    best = [float("inf")] * 3
    for _ in range(repeats):
        spent = [0.0] * 3
        for sub in chunks(groups, _bytes_per_step(arrays, program), CHUNK_BYTES):
            c0 = time.process_time()
            ev = Evaluation(program, leaves(program, arrays, sub, np.float32), np.float32)
            ev.gradients()
            c1 = time.process_time()
            ev.magnitudes(lower=True)
            ev.gradient_magnitudes(lower=True)
            c2 = time.process_time()
            ev.magnitudes()
            ev.gradient_magnitudes()
            spent = [spent[0] + c1 - c0, spent[1] + c2 - c1, spent[2] + time.process_time() - c2]
        best = [min(b, x) for b, x in zip(best, spent)]
    print(f"  recompute floor: program values + gradients cpu {1e3 * best[0]:.1f} ms, rounding magnitudes "
          f"cpu {1e3 * best[2]:.1f} ms (their lower bound, which the check computes instead: {1e3 * best[1]:.1f} ms)")


def _profile(trace) -> None:
    """The 25 functions one check spends most time in (own time)."""
    import cProfile
    import pstats
    prof = cProfile.Profile()
    prof.runcall(tracer.check, trace)
    pstats.Stats(prof).sort_stats("tottime").print_stats(25)


if __name__ == "__main__":
    main()
