"""Two-process DDP jobs on CPU (gloo) for the distributed tests and the bench (issue 15).

An S4-like regression, small: 160 rows x 12 features ~ N(0, 1), y = X @ 0.05 + 0.3 + noise,
``nn.Sequential(Linear(12, 8), ReLU, Linear(8, 1))`` wrapped in DDP, ``MSELoss``,
``SGD(lr=0.05)``, ``DistributedSampler(shuffle=True, seed=0)`` with ``DataLoader(batch_size=10)``
per rank: 8 steps per epoch. ``variant`` plants one bug:

- ``"clean"``: the loop as it should be;
- ``"no_set_epoch"``: ``sampler.set_epoch(epoch)`` forgotten (every epoch draws the same rows);
- ``"no_sync"``: rank 1 runs step ``BUG_STEP`` under ``model.no_sync()`` (its gradient is
  never all-reduced) and one extra batch at the end, so the collectives still pair up;
- ``"modify"``: rank 1 scales the first layer's weight by 0.9 after step ``BUG_STEP``;
- ``"accumulate"`` (clean): each step accumulates 2 micro-batches, the first under
  ``no_sync()`` on every rank (DDP's gradient-accumulation idiom);
- ``"own_hook"`` (clean): DDP with ``gradient_as_bucket_view=True`` and the user's own
  communication hook (``default_hooks.allreduce_hook``).

``spawn_job`` runs the job in two processes and returns ``{rank: final parameters}``.
"""
from __future__ import annotations

import os
import shutil
import socket
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.utils.data import DataLoader, TensorDataset
from torch.utils.data.distributed import DistributedSampler

WORLD = 2
BUG_STEP = 3
N_ROWS, N_FEATURES = 160, 12


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def data() -> TensorDataset:
    g = torch.Generator().manual_seed(4)
    x = torch.randn(N_ROWS, N_FEATURES, generator=g)
    y = x @ torch.full((N_FEATURES, 1), 0.05) + 0.3 + 0.01 * torch.randn(N_ROWS, 1, generator=g)
    return TensorDataset(x, y)


def train(rank: int, variant: str = "clean", epochs: int = 2, batch_size: int = 10) -> DDP:
    """The training loop of one rank, as a user writes it; returns the DDP model."""
    torch.manual_seed(0)
    model = DDP(nn.Sequential(nn.Linear(N_FEATURES, 8), nn.ReLU(), nn.Linear(8, 1)),
                gradient_as_bucket_view=variant == "own_hook")
    if variant == "own_hook":
        from torch.distributed.algorithms.ddp_comm_hooks import default_hooks
        model.register_comm_hook(None, default_hooks.allreduce_hook)
    sampler = DistributedSampler(data(), shuffle=True, seed=0)
    loader = DataLoader(data(), batch_size=batch_size, sampler=sampler)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    loss_fn = nn.MSELoss()
    step = 0
    for epoch in range(epochs):
        if variant != "no_set_epoch":
            sampler.set_epoch(epoch)
        for x, y in loader:
            step += 1
            opt.zero_grad()
            skip = variant == "no_sync" and rank == 1 and step == BUG_STEP
            if variant == "accumulate":            # clean: 2 micro-batches of 5, the first unsynced
                with model.no_sync():
                    (loss_fn(model(x[:5]), y[:5]) / 2).backward()
                (loss_fn(model(x[5:]), y[5:]) / 2).backward()
            elif skip:
                with model.no_sync():
                    loss_fn(model(x), y).backward()
            else:
                loss_fn(model(x), y).backward()
            opt.step()
            if variant == "modify" and rank == 1 and step == BUG_STEP:
                with torch.no_grad():
                    model.module[0].weight.mul_(0.9)
    if variant == "no_sync" and rank == 1:       # the collective rank 0 is still waiting for
        x, y = next(iter(loader))
        opt.zero_grad()
        loss_fn(model(x), y).backward()
    return model


def _worker(rank: int, port: int, out: str, variant: str, traced: bool, epochs: int, reps: int) -> None:
    os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"] = "127.0.0.1", str(port)
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=WORLD)
    try:
        seconds = []
        for _ in range(reps):
            dist.barrier()
            t0 = time.perf_counter()
            if traced:
                from hooks.torch import trace_torch
                from tracer.ranks import save_rank
                with trace_torch() as tr:
                    model = train(rank, variant, epochs)
                seconds.append(time.perf_counter() - t0)
                save_rank(tr.trace, os.path.join(out, "run"), rank)
            else:
                model = train(rank, variant, epochs)
                seconds.append(time.perf_counter() - t0)
        final = {k: v.detach().clone() for k, v in model.module.state_dict().items()}
        hooks_left = sum(len(p._post_accumulate_grad_hooks or {}) for p in model.parameters())
        torch.save({"final": final, "seconds": seconds, "hooks_left": hooks_left,
                    "comm_hooks": len(model._comm_hooks)}, os.path.join(out, f"final_{rank}.pt"))
    finally:
        dist.destroy_process_group()


def _teardown_abort(err: mp.ProcessExitedException, out: str) -> bool:
    """True when a worker died of SIGABRT after writing its result: torch 2.13's gloo can abort
    in a C++ static destructor at process exit ("terminate called without an active
    exception"), after ``destroy_process_group`` returned, with or without steptrace
    (tests/app/test_run_ddp.py, ``TEARDOWN_ABORT``, measured 9 of 127 plain torchruns)."""
    return err.signal_name == "SIGABRT" and os.path.exists(os.path.join(out, f"final_{err.error_index}.pt"))


def spawn_job(out: str, variant: str = "clean", traced: bool = True, epochs: int = 2, reps: int = 1,
              attempts: int = 3) -> dict:
    """Run the job in ``WORLD`` processes; ``{rank: {"final": params, "seconds": [...], "hooks_left":
    hooks left on the model's parameters, "comm_hooks": DDP communication hooks}}``.
    Traced jobs write ``out/run/rank=N/``. A job whose worker aborted at teardown after its
    work was done (``_teardown_abort``) is run again from an empty ``out``, up to ``attempts``
    times; any other failure is raised at once."""
    for attempt in range(attempts):
        shutil.rmtree(out, ignore_errors=True)
        os.makedirs(out)
        try:
            mp.spawn(_worker, args=(free_port(), out, variant, traced, epochs, reps), nprocs=WORLD, join=True)
            break
        except mp.ProcessExitedException as err:
            if attempt == attempts - 1 or not _teardown_abort(err, out):
                raise
    return {r: torch.load(os.path.join(out, f"final_{r}.pt")) for r in range(WORLD)}
