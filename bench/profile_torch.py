"""Where a traced torch step's time goes: Python calls per step and a cProfile, per mode of
``bench/bench_torch.py``.

Why beside the benchmark: at S4's ~1 ms a step the hook's cost is mostly its own Python
(a function call is ~0.1-0.3 us, a torch dispatch a few us), so the number of calls a
step makes says more than a noisy wall-clock ratio on a shared machine, and the profile
says which calls. ``--calls`` counts every Python and C call (``sys.setprofile``'s
``call`` and ``c_call`` events) over one epoch, per step; ``--profile MODE`` prints the
cProfile of one epoch of that mode, the functions of ``hooks`` and ``tracer`` first.

Run: ``python bench/profile_torch.py [--modes untraced,full,summary,every10] [--profile every10]``
"""
from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_torch as bt  # noqa: E402
import torch  # noqa: E402


def calls_per_step(mode: str, x, y) -> tuple[float, float]:
    """(Python calls, C calls) per step over one epoch of ``mode`` (after one warm epoch)."""
    bt.run(bt.MODES[mode], x, y, 1)
    counts = {"call": 0, "c_call": 0}

    def count(frame, event, arg):
        if event in counts:
            counts[event] += 1
    sys.setprofile(count)
    try:
        _, steps, _, _ = bt.run(bt.MODES[mode], x, y, 1)
    finally:
        sys.setprofile(None)
    return counts["call"] / steps, counts["c_call"] / steps


def profile(mode: str, x, y, top: int) -> str:
    """cProfile of one epoch of ``mode``, sorted by own time, hooks and tracer functions only."""
    bt.run(bt.MODES[mode], x, y, 1)
    prof = cProfile.Profile()
    prof.enable()
    _, steps, _, _ = bt.run(bt.MODES[mode], x, y, 1)
    prof.disable()
    out = io.StringIO()
    stats = pstats.Stats(prof, stream=out).sort_stats("tottime")
    out.write(f"{mode}: {steps} steps\n")
    stats.print_stats(r"hooks|tracer|torch/_tensor|torch/optim", top)
    return out.getvalue()


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--modes", default="untraced,full,summary,every10")
    ap.add_argument("--profile", default=None, help="a mode to profile (cProfile)")
    ap.add_argument("--top", type=int, default=40)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    x, y = bt.make_data()
    for mode in args.modes.split(","):
        py, c = calls_per_step(mode, x, y)
        print(f"  {mode:9s} {py:7.1f} Python calls/step  {c:7.1f} C calls/step  ({py + c:.0f} in all)")
    if args.profile:
        print(profile(args.profile, x, y, args.top))


if __name__ == "__main__":
    main()
