"""Benchmark: cost of trace_torch per rank of a 2-process DDP job, next to one process.

S4's regression sizes (7000 x 500 rows, ``nn.Sequential(Linear(500, 256), ReLU,
Linear(256, 1))``, ``MSELoss``, ``SGD(lr=0.01)``): two gloo ranks on CPU, each with a
``DistributedSampler`` and batches of 25 (global batch 50), run the job untraced and
traced (``capture="full"``: values, local and reduced gradients; ``capture="summary"``: norms),
interleaved and repeated; the best time of each per rank is kept. The same model then
trains in one process (batch 50, no DDP) the same three ways. Printed: the traced /
untraced ratios of each rank and of the single process, and whether every run ended
bit-identical.

    python bench/bench_ddp.py [--epochs 1] [--repeats 3] [--json out.json]
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn
from torch.utils.data import DataLoader, TensorDataset
from torch.utils.data.distributed import DistributedSampler

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from hooks.torch import trace_torch  # noqa: E402

WORLD = 2


def make_data(num_examples=10000, num_inputs=500, n_train=7000) -> TensorDataset:
    """S4's synthetic regression data; the first 7000 rows train."""
    np.random.seed(4)
    features = torch.tensor(np.random.normal(0, 1, (num_examples, num_inputs)), dtype=torch.float)
    labels = features @ torch.full((num_inputs, 1), 0.0056) + 0.028
    labels += torch.tensor(np.random.normal(0, 0.01, size=labels.size()), dtype=torch.float)
    return TensorDataset(features[:n_train], labels[:n_train])


def train(ctx, data: TensorDataset, epochs: int, ddp: bool, batch_size: int) -> tuple[float, dict]:
    """One run of the loop inside ``ctx()``; returns (seconds, final parameters)."""
    torch.manual_seed(4)
    model = nn.Sequential(nn.Linear(500, 256), nn.ReLU(), nn.Linear(256, 1))
    sampler = None
    if ddp:
        model = nn.parallel.DistributedDataParallel(model)
        sampler = DistributedSampler(data, shuffle=True, seed=0)
    g = torch.Generator().manual_seed(0)
    loader = DataLoader(data, batch_size=batch_size, sampler=sampler, shuffle=sampler is None, generator=g)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    loss_fn = nn.MSELoss()
    t0 = time.perf_counter()
    with ctx():
        for epoch in range(epochs):
            if sampler is not None:
                sampler.set_epoch(epoch)
            for x, y in loader:
                opt.zero_grad()
                loss_fn(model(x), y).backward()
                opt.step()
    return time.perf_counter() - t0, {k: v.clone() for k, v in model.state_dict().items()}


def _modes():
    return {"untraced": contextlib.nullcontext, "full": lambda: trace_torch(capture="full"),
            "summary": lambda: trace_torch(capture="summary")}


def _rank(rank: int, port: int, out: str, epochs: int, repeats: int) -> None:
    os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"] = "127.0.0.1", str(port)
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=WORLD)
    data = make_data()
    best, finals = {}, {}
    for _ in range(repeats):
        for mode, ctx in _modes().items():
            dist.barrier()
            seconds, finals[mode] = train(ctx, data, epochs, True, 50 // WORLD)
            best[mode] = min(best.get(mode, float("inf")), seconds)
    same = all(torch.equal(finals["untraced"][k], finals[m][k]) for m in finals for k in finals["untraced"])
    torch.save({"best": best, "same": same}, os.path.join(out, f"rank{rank}.pt"))
    dist.destroy_process_group()


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as out:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        mp.spawn(_rank, args=(port, out, args.epochs, args.repeats), nprocs=WORLD, join=True)
        ranks = {r: torch.load(os.path.join(out, f"rank{r}.pt")) for r in range(WORLD)}
    torch.set_num_threads(1)
    data = make_data()
    single, finals = {}, {}
    for _ in range(args.repeats):
        for mode, ctx in _modes().items():
            seconds, finals[mode] = train(ctx, data, args.epochs, False, 50)
            single[mode] = min(single.get(mode, float("inf")), seconds)
    result = {
        "scenario": "S4 regression 7000 x 500 -> 256 -> 1, global batch 50, SGD; 2 gloo ranks vs 1 process",
        "epochs": args.epochs, "repeats": args.repeats, "torch": torch.__version__, "threads_per_process": 1,
        "ratio_per_rank": {r: {m: v["best"][m] / v["best"]["untraced"] for m in ("full", "summary")}
                           for r, v in ranks.items()},
        "seconds_per_rank": {r: v["best"] for r, v in ranks.items()},
        "ratio_single": {m: single[m] / single["untraced"] for m in ("full", "summary")}, "seconds_single": single,
        "bit_identical": all(v["same"] for v in ranks.values())
        and all(torch.equal(finals["untraced"][k], finals[m][k]) for m in finals for k in finals["untraced"]),
    }
    print(result["scenario"] + f", {args.epochs} epoch(s), best of {args.repeats}:")
    rows = [(f"rank {r}", ratio, result["seconds_per_rank"][r]) for r, ratio in result["ratio_per_rank"].items()]
    rows.append(("one process", result["ratio_single"], single))
    for label, ratio, sec in rows:
        print(f"  {label:12s} traced / untraced: full {ratio['full']:.2f}, summary {ratio['summary']:.2f} "
              f"(untraced {sec['untraced']:.2f} s, full {sec['full']:.2f} s, summary {sec['summary']:.2f} s)")
    print(f"  bit-identical with and without tracing: {result['bit_identical']}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
