"""Benchmark: cost of trace_torch on S4's regression MLP (seed 004), in one process.

The user's loop (7000 x 500 training rows, DataLoader batch 50 with shuffle, raw tensors
W1 500x256, b1, W2 256x1, b2, relu = torch.max(x, 0), nn.MSELoss, hand-written SGD on
``param.data``) runs, interleaved and repeated, in these modes:

- ``untraced``;
- ``floor``: the same loop keeping a plain ``clone()`` of every parameter and every
  gradient each step (what any full recording must at least copy);
- ``sumfloor``: the same loop doing by hand only the arithmetic summary capture stores (each
  parameter copied into a reused buffer before the update, the norms of the values, the
  gradients and ``before - after``, one transfer of them a step): no recording can do less;
- ``full``, ``summary`` and ``every10`` (full capture of one step in 10) with ``trace_torch``.

The best time of each is kept; printed as ms/step and as ratios (against untraced, and
full against the floor), wall clock and CPU time (the latter less sensitive to a machine
shared with other work), with the final weights of every mode asserted bit-identical. A
last line gives the steps' own cost: each step's thread CPU time, the least over the
rounds, averaged over the steps after the first five - without what a run pays once (the
first step's program, the trace built at the end) and what a loaded machine moves most.
``--rss`` instead measures the peak RSS of a long summary run against the untraced run,
each in its own process (``--rss-epochs``, 100 by default).

    python bench/bench_torch.py [--epochs 1] [--repeats 5] [--threads 1] [--json out.json]
    python bench/bench_torch.py --rss [--rss-epochs 100]
"""
from __future__ import annotations

import argparse
import contextlib
import gc
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.utils.data as Data

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from hooks.torch import trace_torch  # noqa: E402


def make_data(num_examples=10000, num_inputs=500, n_train=7000):
    """The page's synthetic regression data; first 7000 rows train."""
    np.random.seed(4)
    true_w = torch.ones(num_inputs, 1) * 0.0056
    true_b = 0.028
    features = torch.tensor(np.random.normal(0, 1, (num_examples, num_inputs)), dtype=torch.float)
    labels = torch.mm(features, true_w) + true_b
    labels += torch.tensor(np.random.normal(0, 0.01, size=labels.size()), dtype=torch.float)
    return features[:n_train], labels[:n_train]


class Floor:
    """The floor: keep a ``clone()`` of every parameter and gradient each step (no tracer)."""

    def __init__(self):
        self.kept = []
        self.trace = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.kept = []
        return False

    def keep(self, params):
        self.kept.append([p.detach().clone() for p in params] + [p.grad.detach().clone() for p in params])


class SummaryFloor(Floor):
    """The summary floor: the norms summary capture keeps, computed by hand (no tracer)."""

    def before(self, params):
        ps = [p.detach() for p in params]
        if not self.kept:
            self.bufs = [torch.empty_like(p) for p in ps]
        torch._foreach_copy_(self.bufs, ps)
        self.norms = list(torch._foreach_norm(self.bufs)) + list(torch._foreach_norm([p.grad for p in params]))

    def keep(self, params):
        torch._foreach_sub_(self.bufs, [p.detach() for p in params])
        self.kept.append([float(v) for v in self.norms + list(torch._foreach_norm(self.bufs))])


def run(ctx, trainfeatures, trainlabels, num_epochs):
    """One training run of the page's loop; returns (seconds in the loop, steps, final
    W1 and W2, the trace or None)."""
    torch.manual_seed(4)
    np.random.seed(5)
    batch_size, num_inputs, num_hiddens = 50, 500, 256
    train_iter = Data.DataLoader(Data.TensorDataset(trainfeatures, trainlabels), batch_size, shuffle=True,
                                 num_workers=0)
    W1 = torch.tensor(np.random.normal(0, 0.01, (num_inputs, num_hiddens)), dtype=torch.float32)
    b1 = torch.zeros(1, dtype=torch.float32)
    W2 = torch.tensor(np.random.normal(0, 0.01, (num_hiddens, 1)), dtype=torch.float32)
    b2 = torch.zeros(1, dtype=torch.float32)
    params = [W1, b1, W2, b2]
    for param in params:
        param.requires_grad_(requires_grad=True)

    def relu(x):
        return torch.max(x, torch.tensor(0.0))

    def net(X):
        X = X.view((-1, num_inputs))
        H = relu(torch.matmul(X, W1) + b1)
        return torch.matmul(H, W2) + b2

    loss = torch.nn.MSELoss()
    lr = 0.01

    def SGD(params, lr, batch_size):
        for param in params:
            param.data -= lr * param.grad / batch_size

    steps = 0
    STEP_MARKS.clear()
    t0, c0 = time.perf_counter(), time.process_time()
    STEP_MARKS.append(time.thread_time_ns())
    with ctx() as tr:
        floor = tr if isinstance(tr, Floor) else None
        for epoch in range(num_epochs):
            for X, y in train_iter:
                y_hat = net(X)
                l = loss(y_hat, y)
                if params[0].grad is not None:
                    for param in params:
                        param.grad.data.zero_()
                l.backward()
                if isinstance(floor, SummaryFloor):
                    floor.before(params)
                SGD(params, lr, batch_size)
                if floor is not None:
                    floor.keep(params)
                steps += 1
                STEP_MARKS.append(time.thread_time_ns())
    seconds = time.perf_counter() - t0
    LAST_CPU[0] = time.process_time() - c0        # CPU seconds: less sensitive to a loaded machine
    final = torch.cat([W1.detach().reshape(-1), W2.detach().reshape(-1)])
    return seconds, steps, final, (tr.trace if tr is not None and floor is None else None)


LAST_CPU = [0.0]
STEP_MARKS: list[int] = []     # thread CPU time (ns) at the loop's start and after each step of the last run
MODES = {"untraced": contextlib.nullcontext, "floor": Floor, "sumfloor": SummaryFloor,
         "full": lambda: trace_torch(capture="full"),
         "summary": lambda: trace_torch(capture="summary"),
         "every10": lambda: trace_torch(capture="full", every=10)}


def timings(x, y, epochs: int, repeats: int) -> dict:
    """Best seconds per mode over ``repeats`` interleaved rounds; asserts identical weights."""
    run(MODES["untraced"], x, y, 1)                         # warm-up
    run(MODES["full"], x, y, 1)
    best = {m: float("inf") for m in MODES}
    cpu = {m: float("inf") for m in MODES}
    finals, steps = {}, 0
    per_step: dict[str, np.ndarray] = {}     # mode -> each step's least thread CPU time over the rounds
    for _ in range(repeats):
        for mode, ctx in MODES.items():
            gc.collect()     # every mode starts with the earlier runs' garbage freed, not when the GC gets to it
            seconds, steps, final, trace = run(ctx, x, y, epochs)
            best[mode] = min(best[mode], seconds)
            cpu[mode] = min(cpu[mode], LAST_CPU[0])
            durations = np.diff(np.asarray(STEP_MARKS, dtype=np.int64))
            per_step[mode] = durations if mode not in per_step else np.minimum(per_step[mode], durations)
            finals[mode] = final
            if trace is not None:
                kept = -(-steps // 10) if mode == "every10" else steps
                assert trace.n_steps == kept, (mode, trace.n_steps, kept)
            del trace
    same = all(torch.equal(finals["untraced"], finals[m]) for m in finals)
    assert same, "final weights differ between modes"
    # the steps' own cost, without what a run pays once (the first step's program, the trace at the end)
    # and with each step's least time over the rounds: what a loaded machine moves least
    steady = {m: float(d[5:].mean()) / 1e9 for m, d in per_step.items()}
    return {"best": best, "cpu": cpu, "steady": steady, "steps": steps, "bit_identical": same}


def peak_rss(mode: str, epochs: int, threads: int) -> float:
    """Peak RSS (MB) of one run of ``mode`` for ``epochs`` epochs, in a fresh process."""
    code = (f"import sys, resource; sys.argv=['x']; sys.path.insert(0, {str(Path(__file__).parent)!r}); "
            f"import torch; torch.set_num_threads({threads}); import bench_torch as b; "
            f"x, y = b.make_data(); b.run(b.MODES[{mode!r}], x, y, {epochs}); "
            "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return int(out.stdout.strip().splitlines()[-1]) / 1024


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1, help="torch.set_num_threads (0: leave as is)")
    ap.add_argument("--rss", action="store_true", help="peak RSS of a long summary run vs untraced")
    ap.add_argument("--rss-epochs", type=int, default=100)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.rss:
        base = peak_rss("untraced", args.rss_epochs, args.threads)
        summ = peak_rss("summary", args.rss_epochs, args.threads)
        print(f"S4 {args.rss_epochs} epochs, peak RSS: untraced {base:.0f} MB, summary {summ:.0f} MB, "
              f"added {summ - base:.0f} MB")
        return {"rss_untraced_mb": base, "rss_summary_mb": summ}
    x, y = make_data()
    t = timings(x, y, args.epochs, args.repeats)
    best, steps = t["best"], t["steps"]
    result = {
        "scenario": "S4 regression 7000 x 500 -> 256 -> 1, batch 50, shuffle",
        "epochs": args.epochs, "steps": steps, "repeats": args.repeats, "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "ms_per_step": {m: 1e3 * best[m] / steps for m in MODES},
        "ratio": {m: best[m] / best["untraced"] for m in MODES},
        "full_vs_floor": best["full"] / best["floor"],
        "summary_vs_sumfloor": best["summary"] / best["sumfloor"],
        "cpu_ratio": {m: t["cpu"][m] / t["cpu"]["untraced"] for m in MODES},
        "cpu_full_vs_floor": t["cpu"]["full"] / t["cpu"]["floor"],
        "steady_us_per_step": {m: 1e6 * t["steady"][m] for m in MODES},
        "steady_ratio": {m: t["steady"][m] / t["steady"]["untraced"] for m in MODES},
        "bit_identical": t["bit_identical"],
    }
    print(f"{result['scenario']}: {steps} steps per run, best of {args.repeats}, "
          f"{result['threads']} torch threads")
    for m in MODES:
        print(f"  {m:9s} {result['ms_per_step'][m]:7.3f} ms/step  {result['ratio'][m]:5.2f}x untraced   "
              f"CPU time {result['cpu_ratio'][m]:5.2f}x")
    st = result["steady_ratio"]
    print("  per step (thread CPU, each step's least over the rounds, first 5 steps left out): "
          + ", ".join(f"{m} {st[m]:.3f}x" for m in MODES if m != "untraced")
          + f"; full / floor {st['full'] / st['floor']:.3f}x, summary / sumfloor {st['summary'] / st['sumfloor']:.3f}x")
    print(f"  full / floor {result['full_vs_floor']:.2f}x (CPU time {result['cpu_full_vs_floor']:.2f}x); "
          f"summary / sumfloor {result['summary_vs_sumfloor']:.2f}x; final weights bit-identical: {t['bit_identical']}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
