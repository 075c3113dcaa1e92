"""Benchmark: cost of ``steptrace run --numpy-params`` (the sys.settrace session) on a script.

Seed 000's NumPy script (tests/scripts/s0_numpy.py, S0: 1000 rows, 100 iterations, a
print per iteration) runs as ``__main__`` untraced and with the NumPy loop session of
``steptrace run --numpy-params weights,biases`` installed, interleaved and repeated in
one process; the best time of each is kept. A second script moves the same loop into a
function that calls small Python helpers every iteration (the global trace function
is called once per Python call, so this is the unfavourable case). Only the script's
run is timed, then the building of its trace: not the check or the export that
``steptrace run`` does afterwards. For comparison the same scripts also run with the
loop edited to ``for i in NumpyTracer(...).range(...)`` (the in-loop API, which
records the same values without a trace function): the difference between the two
traced times is the cost of ``sys.settrace`` itself.

    python bench/bench_numpy_run.py [--repeats 7] [--json out.json]
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import runpy
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("MPLBACKEND", "Agg")

from hooks.autotrace.numpy_loop import find_loop  # noqa: E402
from hooks.autotrace.numpy_session import NumpySession  # noqa: E402
from hooks.autotrace.numpy_steps import NumpyOptions  # noqa: E402

S0 = ROOT / "tests" / "scripts" / "s0_numpy.py"

HELPERS = '''
import numpy as np

def forward(x, w, b):
    return np.dot(x, w) + b

def half_mse(d):
    return np.sum(d ** 2) / 2 / len(d)

def train(x, y, w, b, lr, iterations):
    for i in range(iterations):
        outputs = forward(x, w, b)
        deltas = outputs - y
        loss = half_mse(deltas)
        scaled = deltas / len(x)
        w = w - lr * np.dot(x.T, scaled)
        b = b - lr * np.sum(scaled)
    return w, b

rng = np.random.default_rng(0)
x = rng.uniform(-10, 10, (1000, 1)); y = 13 * x + 2
w, b = train(x, y, np.zeros((1, 1)), np.zeros(1), 0.02, 2000)
'''


def edited(source: str, header: str, params: list, names: dict) -> str:
    """``source`` with its loop header ``for i in range(N):`` drawn from ``NumpyTracer.range``."""
    start = header.index("range")
    args = ", ".join(f"{k}={v!r}" for k, v in names.items() if k in ("predictions", "loss"))
    data = f"inputs={names.get('inputs', 'x')}, targets={names.get('targets', 'y')}"
    tracer = f"__import__('hooks.numpy', fromlist=['NumpyTracer']).NumpyTracer({params!r}, {args}, {data})"
    return source.replace(header, header[:start] + tracer + "." + header[start:], 1)


def names_for(script: Path) -> tuple[list, dict, str]:
    if script.name.startswith("helpers"):
        return ["w", "b"], {"predictions": "outputs", "loss": "loss"}, "for i in range(iterations):"
    return ["weights", "biases"], {"predictions": "outputs", "loss": "loss", "inputs": "x",
                                   "targets": "targets"}, "for i in range (100):"


def session_for(script: Path):
    """The session ``steptrace run --numpy-params`` installs for ``script`` (found before timing)."""
    params, names, _ = names_for(script)
    site = find_loop(script.read_text(), str(script), params)
    return lambda on_run: NumpySession(site, NumpyOptions(params, **names), on_run)


def run_once(script: Path, make_session=None) -> tuple[float, float, int]:
    """``(seconds of the script as __main__, seconds to build the trace afterwards, steps)``."""
    finished = []
    session = None if make_session is None else make_session(lambda steps, error: finished.append(steps))
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        if session is not None:
            session.install()
        try:
            runpy.run_path(str(script), run_name="__main__")
        finally:
            if session is not None:
                session.uninstall()
    seconds = time.perf_counter() - t0
    t1 = time.perf_counter()
    steps = sum(s.tracer.trace.n_steps for s in finished if s.tracer is not None)
    return seconds, time.perf_counter() - t1, steps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--json", metavar="FILE")
    args = ap.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        helpers = Path(tmp) / "helpers.py"
        helpers.write_text(HELPERS)
        for name, script in (("s0_numpy", S0), ("helpers_2000_iterations", helpers)):
            params, names, header = names_for(script)
            api = Path(tmp) / f"{script.stem}_api.py"
            api.write_text(edited(script.read_text(), header, params, names))
            make = session_for(script)
            run_once(script)                   # imports and caches warm
            best = {"untraced": float("inf"), "settrace": float("inf"), "api": float("inf"), "build": float("inf")}
            steps = 0
            for _ in range(args.repeats):
                best["untraced"] = min(best["untraced"], run_once(script)[0])
                best["api"] = min(best["api"], run_once(api)[0])
                seconds, build, steps = run_once(script, make)
                best["settrace"] = min(best["settrace"], seconds)
                best["build"] = min(best["build"], build)
            results[name] = {**{f"{k}_s": v for k, v in best.items()}, "steps_recorded": steps,
                             "ratio_settrace": best["settrace"] / best["untraced"],
                             "ratio_api": best["api"] / best["untraced"]}
            print(f"{name} ({steps} steps): untraced {best['untraced'] * 1000:.1f} ms; "
                  f"steptrace run --numpy-params {best['settrace'] * 1000:.1f} ms "
                  f"(x{best['settrace'] / best['untraced']:.2f}); NumpyTracer.range in the loop "
                  f"{best['api'] * 1000:.1f} ms (x{best['api'] / best['untraced']:.2f}); "
                  f"building the trace afterwards {best['build'] * 1000:.1f} ms")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
