"""Run the fuzz cases of tests/reliability many times and count how each one ended.

Why: the reliability issue asks for "the number of fuzz cases run, with 0 tracebacks";
the tests run a CI-sized sample, this runs as many as asked with the same generators
(tests/reliability/_fuzzcases.py) and prints one line per kind of case:

    python bench/fuzz_count.py --cases 1000            # each kind, in-process
    python bench/fuzz_count.py --cases 200 --cli 50    # plus 50 real `python -m tracer check` runs
    python bench/fuzz_count.py --cases 1000 --seed 3   # reproducible (Hypothesis seed)
    python bench/fuzz_count.py --cases 300 --zero-size # also check traces with zero-size parameters

Each crash's traceback (the first few) is printed at the end, with what reproduces it.

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
import traceback
import warnings
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests" / "reliability"), str(ROOT / "tests"), str(ROOT)]

from hypothesis import HealthCheck, given, seed, settings  # noqa: E402

import _fuzzcases as fc  # noqa: E402
import numpy as np  # noqa: E402


SEED: list = [None]       # --seed: the Hypothesis seed of every kind (None: random)
CRASHES: list = []        # (kind, what, traceback) of each crash


def _settings(n: int):
    made = settings(max_examples=n, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    return made if SEED[0] is None else (lambda fn: seed(SEED[0])(made(fn)))


def _outcome(kind: str, what, fn) -> str:
    """:func:`_fuzzcases.outcome`, keeping the traceback of a crash."""
    def run():
        try:
            fn()
        except fc.SteptraceError as exc:
            if "\n" in str(exc):
                CRASHES.append((kind, what, traceback.format_exc()))
            raise
        except Exception:
            CRASHES.append((kind, what, traceback.format_exc()))
            raise
    return fc.outcome(run)


def round_trips(n: int, exports: bool) -> Counter:
    """Random traces through save/load/check (and CSV + xlsx exports)."""
    counts: Counter = Counter()

    @_settings(n)
    @given(fc.traces())
    def case(trace):
        with tempfile.TemporaryDirectory() as work:
            counts[_outcome("round trip", trace.meta.get("params"),
                            lambda: fc.round_trip(trace, Path(work), exports=exports))] += 1
    case()
    return counts


def zero_size_checks(n: int) -> Counter:
    """Random traces with a zero-size parameter through ``tracer.check`` (which the round
    trips leave out: docs/RELIABILITY.md's known checker defect)."""
    import tracer
    counts: Counter = Counter()

    @_settings(n)
    @given(fc.traces())
    def case(trace):
        if all(int(np.prod(p["shape"])) > 0 for p in trace.meta.get("params", [])):
            counts["skipped (no zero-size parameter)"] += 1
            return
        with tempfile.TemporaryDirectory() as work:
            back = fc.Trace.load(trace.save(Path(work) / "t.trace")) if _saves(trace, Path(work)) else None
            if back is not None:
                counts[_outcome("zero-size check", back.meta.get("params"), lambda: tracer.check(back))] += 1
    case()
    return counts


def _saves(trace, work: Path) -> bool:
    try:
        trace.save(work / "probe.trace")
        return True
    except fc.SteptraceError:
        return False


def mutated_files(n: int, good: Path) -> Counter:
    """Mutated trace files through the in-process command line."""
    counts: Counter = Counter()

    @_settings(n)
    @given(fc.file_mutations())
    def case(mutation):
        with tempfile.TemporaryDirectory() as work:
            result, err = fc.check_mutated(good, mutation, Path(work))
            if result == "crash":
                CRASHES.append(("mutated file", mutation[:2], err))
            counts[result] += 1
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
            if bad:
                CRASHES.append(("python -m tracer check", mutation[:2], proc.stderr))
            counts["crash" if bad else ("refused" if proc.returncode == 2 else "ok")] += 1
    case()
    return counts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=500, help="cases of each in-process kind (default 500)")
    parser.add_argument("--cli", type=int, default=0, help="cases through the real command line (default 0)")
    parser.add_argument("--seed", type=int, help="Hypothesis seed, to repeat a run exactly (default: random)")
    parser.add_argument("--zero-size", type=int, default=0, metavar="N",
                        help="N random traces checked when one has a zero-size parameter (default 0)")
    args = parser.parse_args()
    SEED[0] = args.seed
    warnings.simplefilter("ignore")
    good = fc.good_trace_dir()
    kinds = [("round trip save/load/check", lambda: round_trips(args.cases, exports=False)),
             ("round trip + CSV/xlsx export", lambda: round_trips(max(1, args.cases // 5), exports=True)),
             ("mutated files, steptrace check", lambda: mutated_files(args.cases, good))]
    if args.zero_size:
        kinds.append(("zero-size parameters, tracer.check", lambda: zero_size_checks(args.zero_size)))
    if args.cli:
        kinds.append(("mutated files, python -m tracer", lambda: real_cli(args.cli, good)))
    total: Counter = Counter()
    for label, run in kinds:
        t0 = time.perf_counter()
        counts = run()
        total += counts
        skipped = sum(v for k, v in counts.items() if k.startswith("skipped"))
        print(f"{label:34s} {sum(counts.values()) - skipped:6d} cases: ok {counts['ok']:6d}  refused "
              f"{counts['refused']:6d}  crash {counts['crash']:3d}  ({time.perf_counter() - t0:.1f}s)")
    n_total = sum(v for k, v in total.items() if not k.startswith("skipped"))
    print(f"{'total':34s} {n_total:6d} cases, {total['crash']} crashes (tracebacks)"
          + (f", seed {args.seed}" if args.seed is not None else ""))
    for kind, what, text in CRASHES[:5]:
        print(f"\n--- crash in {kind}: {what!r:.300}\n" + "\n".join(str(text).strip().splitlines()[-12:]))
    shutil.rmtree(good.parent, ignore_errors=True)
    return 1 if total["crash"] else 0


if __name__ == "__main__":
    sys.exit(main())
