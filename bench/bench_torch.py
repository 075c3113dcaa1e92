"""Benchmark: cost of trace_torch on S4's regression MLP (seed 004), in one process.

The user's loop (7000 x 500 training rows, DataLoader batch 50 with shuffle, raw tensors
W1 500x256, b1, W2 256x1, b2, relu = torch.max(x, 0), nn.MSELoss, hand-written SGD on
``param.data``) runs untraced, traced with ``capture="full"`` and traced with
``capture="summary"``, interleaved and repeated; the best time of each is kept and the
ratios traced / untraced are printed (and written as JSON with ``--json``).

    python bench/bench_torch.py [--epochs 3] [--repeats 3] [--threads N] [--json out.json]
"""
from __future__ import annotations

import argparse
import contextlib
import json
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


def run(ctx, trainfeatures, trainlabels, num_epochs):
    """One training run of the page's loop; returns (seconds in the loop, steps, final W2)."""
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
    t0 = time.perf_counter()
    with ctx() as tr:
        for epoch in range(num_epochs):
            for X, y in train_iter:
                y_hat = net(X)
                l = loss(y_hat, y)
                if params[0].grad is not None:
                    for param in params:
                        param.grad.data.zero_()
                l.backward()
                SGD(params, lr, batch_size)
                steps += 1
    seconds = time.perf_counter() - t0
    return seconds, steps, W2.detach().clone(), (tr.trace if tr is not None else None)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (0: leave as is)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    x, y = make_data()
    modes = {"untraced": contextlib.nullcontext,
             "full": lambda: trace_torch(capture="full"),
             "summary": lambda: trace_torch(capture="summary")}
    run(modes["untraced"], x, y, 1)                         # warm-up
    best = {m: float("inf") for m in modes}
    finals = {}
    steps = 0
    for _ in range(args.repeats):
        for mode, ctx in modes.items():
            seconds, steps, w2, trace = run(ctx, x, y, args.epochs)
            best[mode] = min(best[mode], seconds)
            finals[mode] = w2
            if trace is not None:
                assert trace.n_steps == steps, (trace.n_steps, steps)
    same = all(torch.equal(finals["untraced"], finals[m]) for m in finals)
    result = {
        "scenario": "S4 regression 7000 x 500 -> 256 -> 1, batch 50, shuffle",
        "epochs": args.epochs, "steps": steps, "repeats": args.repeats, "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "ms_per_step": {m: 1e3 * best[m] / steps for m in modes},
        "ratio_full": best["full"] / best["untraced"],
        "ratio_summary": best["summary"] / best["untraced"],
        "bit_identical": same,
    }
    print(f"{result['scenario']}: {steps} steps per run, best of {args.repeats}, "
          f"{result['threads']} torch threads")
    for m in modes:
        print(f"  {m:9s} {result['ms_per_step'][m]:7.3f} ms/step")
    print(f"  traced/untraced: full {result['ratio_full']:.2f}x, summary {result['ratio_summary']:.2f}x; "
          f"final weights bit-identical: {same}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
