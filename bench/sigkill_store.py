"""SIGKILL a recording process at random moments and count the steps its store kept.

Why: the streaming store promises that a killed run loses at most the steps since its
last flush. Each trial starts a child that records steps (2 ms apart) into a
``StreamStore(flush_every=K)``, kills it with SIGKILL after a random 0.2-2 s, loads the
directory and compares: steps kept, steps the child had reported as recorded, and
whether every kept value equals what was recorded.

    python bench/sigkill_store.py --trials 20 --flush-every 25 --seed 1
"""
from __future__ import annotations

import argparse
import random
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests" / "reliability"), str(ROOT)]

from _sigkill import kill_at_random  # noqa: E402
from tracer import Trace  # noqa: E402


def trial(every: int, seconds: float) -> tuple[int, int, bool]:
    """``(recorded, kept, values_equal)`` of one kill."""
    with tempfile.TemporaryDirectory() as work:
        path = Path(work) / "run.trace"
        recorded = kill_at_random(path, every, seconds)
        back = Trace.load(path)
        s = np.arange(1, back.n_steps + 1)
        equal = bool(np.array_equal(back.steps["step"], s)
                     and np.array_equal(back.param_values("w", "before")[:, 0, 0], s * 0.5)
                     and np.array_equal(back.steps["loss"], s.astype(float)))
        return recorded, back.n_steps, equal


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--flush-every", type=int, default=25)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    worst, bad = 0, 0
    print(f"{'trial':>5} {'killed after':>12} {'recorded':>9} {'kept':>6} {'lost':>5}  values")
    for i in range(1, args.trials + 1):
        seconds = rng.uniform(0.2, 2.0)
        recorded, kept, equal = trial(args.flush_every, seconds)
        lost = recorded - kept
        worst = max(worst, lost)
        ok = equal and kept >= recorded // args.flush_every * args.flush_every
        bad += not ok
        print(f"{i:5d} {seconds:11.2f}s {recorded:9d} {kept:6d} {lost:5d}  {'equal' if equal else 'DIFFER'}")
    print(f"{args.trials} kills, flush every {args.flush_every} steps: at most {worst} recorded steps lost "
          f"(bound: {args.flush_every - 1} unflushed), {bad} trials broke the promise")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
