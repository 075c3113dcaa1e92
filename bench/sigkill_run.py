"""SIGKILL ``steptrace run`` at random steps of a torch loop (or a Keras fit) and count the steps kept.

Why: ``steptrace run`` promises that a killed run loses at most the steps since its
last flush (``tracer.app.run_dir.FLUSH_EVERY`` steps or ``FLUSH_SECONDS`` seconds).
Each trial runs ``tests/scripts/steps_torch.py`` (a 2-8-1 MLP, one step every 5 ms)
under ``steptrace run``, kills it with SIGKILL once the script has printed a random
step, loads ``OUT/unfinished-*/stream_1`` and prints the steps done, kept and lost.

    python bench/sigkill_run.py --trials 5 --seed 1 [--script steps_keras.py]
"""
from __future__ import annotations

import argparse
import random
import signal
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests" / "reliability"), str(ROOT)]

from _kills import signal_at, start, unfinished  # noqa: E402
from tracer import Trace  # noqa: E402
from tracer.app.run_dir import FLUSH_EVERY  # noqa: E402


def trial(script: str, at: int) -> tuple[int, int]:
    """``(steps the script had done, steps kept)`` of one kill."""
    with tempfile.TemporaryDirectory() as work:
        out = Path(work) / "out"
        killed = signal_at(start(script, out, 100_000, 0.005), at, signal.SIGKILL)
        sessions = unfinished(out)
        stream = sessions[0] / "stream_1" if sessions else None
        kept = Trace.load(stream).n_steps if stream is not None and stream.exists() else 0
        return killed.printed, kept


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--script", default="steps_torch.py")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    worst = 0
    print(f"{'trial':>5} {'killed at':>9} {'done':>6} {'kept':>6} {'lost':>5}")
    for i in range(1, args.trials + 1):
        at = rng.randrange(20, 20 * FLUSH_EVERY)
        done, kept = trial(args.script, at)
        worst = max(worst, done - kept)
        print(f"{i:>5} {at:>9} {done:>6} {kept:>6} {done - kept:>5}")
    bound = FLUSH_EVERY + 1
    print(f"worst loss {worst} steps; bound: one flush interval ({FLUSH_EVERY} steps) + the step in flight "
          f"= {bound}: {'HOLDS' if worst <= bound else 'EXCEEDED'}")
    return 0 if worst <= bound else 1


if __name__ == "__main__":
    sys.exit(main())
