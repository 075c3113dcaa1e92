"""Run the fuzz cases of tests/reliability many times and count how each one ended.

Why: the reliability issue asks for "the number of fuzz cases run, with 0 tracebacks";
the tests run a CI-sized sample, this runs as many as asked with the same generators
(tests/reliability/_fuzzcases.py) and prints one line per kind of case:

    python bench/fuzz_count.py --cases 1000            # each kind, in-process
    python bench/fuzz_count.py --cases 200 --cli 50    # plus 50 real `python -m tracer check` runs

Outcomes: ok (loaded / round-tripped / checked), refused (one steptrace error line, exit
code 2 on the command line), crash (anything else: a traceback). Exit code 1 if any crash.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests" / "reliability"), str(ROOT / "tests"), str(ROOT)]

from hypothesis import HealthCheck, given, settings  # noqa: E402

import _fuzzcases as fc  # noqa: E402


def _settings(n: int):
    return settings(max_examples=n, deadline=None, database=None, suppress_health_check=list(HealthCheck))


def round_trips(n: int, exports: bool) -> Counter:
    """Random traces through save/load/check (and CSV + xlsx exports)."""
    counts: Counter = Counter()

    @_settings(n)
    @given(fc.traces())
    def case(trace):
        with tempfile.TemporaryDirectory() as work:
            counts[fc.outcome(lambda: fc.round_trip(trace, Path(work), exports=exports))] += 1
    case()
    return counts


def mutated_files(n: int, good: Path) -> Counter:
    """Mutated trace files through the in-process command line."""
    counts: Counter = Counter()

    @_settings(n)
    @given(fc.file_mutations())
    def case(mutation):
        with tempfile.TemporaryDirectory() as work:
            counts[fc.check_mutated(good, mutation, Path(work))[0]] += 1
    case()
    return counts


def real_cli(n: int, good: Path) -> Counter:
    """Mutated trace files through ``python -m tracer check`` in a subprocess."""
    counts: Counter = Counter()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}

    @_settings(n)
    @given(fc.file_mutations())
    def case(mutation):
        with tempfile.TemporaryDirectory() as work:
            path = Path(work) / "case.trace"
            shutil.copytree(good, path)
            mutation[2](path)
            proc = subprocess.run([sys.executable, "-m", "tracer", "check", str(path)], capture_output=True,
                                  text=True, env=env, timeout=300)
            bad = "Traceback" in proc.stderr or proc.returncode not in (0, 1, 2, 3) or (
                proc.returncode == 2 and len(proc.stderr.splitlines()) != 1)
            counts["crash" if bad else ("refused" if proc.returncode == 2 else "ok")] += 1
    case()
    return counts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=500, help="cases of each in-process kind (default 500)")
    parser.add_argument("--cli", type=int, default=0, help="cases through the real command line (default 0)")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    good = fc.good_trace_dir()
    kinds = [("round trip save/load/check", lambda: round_trips(args.cases, exports=False)),
             ("round trip + CSV/xlsx export", lambda: round_trips(max(1, args.cases // 5), exports=True)),
             ("mutated files, steptrace check", lambda: mutated_files(args.cases, good))]
    if args.cli:
        kinds.append(("mutated files, python -m tracer", lambda: real_cli(args.cli, good)))
    total: Counter = Counter()
    for label, run in kinds:
        t0 = time.perf_counter()
        counts = run()
        total += counts
        print(f"{label:34s} {sum(counts.values()):6d} cases: ok {counts['ok']:6d}  refused {counts['refused']:6d}  "
              f"crash {counts['crash']:3d}  ({time.perf_counter() - t0:.1f}s)")
    print(f"{'total':34s} {sum(total.values()):6d} cases, {total['crash']} crashes (tracebacks)")
    shutil.rmtree(good.parent, ignore_errors=True)
    return 1 if total["crash"] else 0


if __name__ == "__main__":
    sys.exit(main())
