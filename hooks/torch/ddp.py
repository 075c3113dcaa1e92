"""``trace_torch`` inside a ``torch.distributed`` process (DDP): the rank's local gradient,
the sampler's epoch, and the rank's place in the job (issue 15).

Why a module of its own: a DDP rank runs the same loop as a single process, so the
ordinary hook records it unchanged - rows (the ``DistributedSampler``'s indices, read
from the DataLoader like any sampler's), parameters, and the gradient ``optimizer.step()``
uses, which under DDP is the *reduced* one (the all-reduce ran inside ``backward``).
What only a distributed run has is added here:

- the rank's **local** gradient, before the all-reduce. A post-accumulate-grad hook on
  each trained tensor (``Tensor.register_post_accumulate_grad_hook``) runs right after
  autograd accumulated the rank's own gradient into ``.grad`` and before DDP's reducer
  (a post hook of the same accumulate node) copies it into its bucket; it reads and
  clones, nothing else. It is used instead of ``DistributedDataParallel.register_comm_hook``
  because a communication hook cannot be unregistered (the reducer refuses a second one
  and has no removal), so the user's DDP would not be left as found; these handles are
  removed when the block ends, and a user's own communication hook keeps working.
- ``sampler_epoch`` per step: the ``DistributedSampler``'s ``epoch`` (what
  ``set_epoch`` set), the evidence for a forgotten ``set_epoch``.
- ``meta["distributed"]``: ``rank``, ``world_size``, ``backend``, the sampler's ``shuffle`` / ``seed`` / ``num_replicas``.

Nothing here changes a number: the hooks only clone ``.grad``; the all-reduce, its
bucket order and the optimizer are untouched, so a traced job is bit-identical to an
untraced one (tested in ``tests/hooks/test_torch_ddp.py``).
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Any

import torch

__all__ = ["DistWatch", "detect", "initialized"]

LOCAL_GRAD = "local_grad"      # the params-table column holding the rank's local gradient


def initialized() -> bool:
    """Whether a process group is initialised (cheap: asked at every backward until one is)."""
    try:
        return torch.distributed.is_available() and torch.distributed.is_initialized()
    except (AttributeError, RuntimeError):   # a torch built without (or with a broken) distributed package
        return False


def detect() -> DistWatch | None:
    """A :class:`DistWatch` when this process is a rank of an initialised process group
    of more than one rank, else None (a single process is traced as before)."""
    try:
        import torch.distributed as dist
        if not (dist.is_available() and dist.is_initialized()):
            return None
        world = dist.get_world_size()
        if world < 2:
            return None
        return DistWatch(dist.get_rank(), world, str(dist.get_backend()))
    except (AttributeError, RuntimeError, ValueError):   # a half-initialised group is traced as a single process
        return None


class DistWatch:
    """What one rank adds to its trace: local gradients, the sampler's epoch, its place."""

    def __init__(self, rank: int, world_size: int, backend: str) -> None:
        self.rank, self.world_size, self.backend = rank, world_size, backend
        self.local: dict[int, torch.Tensor] = {}   # id(param) -> local gradient of the open step
        self._handles: dict[int, Any] = {}          # id(param) -> its post-accumulate-grad hook
        self._recording = False
        self._steps: OrderedDict = OrderedDict()    # id(step) -> (local gradients, sampler epoch)
        self.sampler: dict | None = None            # the DistributedSampler seen, as meta

    # ---------------------------------------------------------------- hooks
    def on_open(self, step: Any, full: bool) -> None:
        """A step opened at ``backward``: hook its trained tensors (once each) so their
        local gradient is cloned as autograd accumulates it. What a step saw is kept
        with the step (a step may be recorded later, when the program is known)."""
        self._recording = bool(step.record and full)
        self.local = {}
        for p in step.params:
            if id(p) not in self._handles and p.requires_grad and p.is_leaf:
                self._handles[id(p)] = p.register_post_accumulate_grad_hook(self._grab)
        epoch = None
        batch = step.loader_batch
        if batch is not None:
            epoch = self._note_sampler(batch.iterator)
        self._steps[id(step)] = (self.local, epoch)
        while len(self._steps) > 4:                  # folded or skipped steps are never recorded
            self._steps.popitem(last=False)

    def _grab(self, p: torch.Tensor) -> None:
        """Post-accumulate-grad hook: ``p.grad`` is this rank's gradient, not yet reduced."""
        try:
            if self._recording and p.grad is not None:
                self.local[id(p)] = p.grad.detach().clone()
        except Exception:   # the user-script boundary: a hook inside the user's backward must never raise
            pass

    def remove(self) -> None:
        """Take every hook off the user's tensors (the block ended)."""
        for h in self._handles.values():
            h.remove()
        self._handles = {}
        self.local = {}

    # --------------------------------------------------------------- record
    def add_to(self, step: Any, names: dict[int, str], state: dict | None, extra: dict) -> dict | None:
        """Put the step's local gradients into ``state`` (a ``local_grad`` column of the
        params table) and the sampler's epoch into ``extra``; returns the new state."""
        local, epoch = self._steps.pop(id(step), ({}, None))
        if epoch is not None:
            extra["sampler_epoch"] = float(epoch)
        if not local:
            return state
        state = dict(state or {})
        for p in step.params:
            g = local.get(id(p))
            if g is None:
                continue
            name = names[id(p)]
            value = g.float().numpy() if g.dtype == torch.bfloat16 else g.numpy()
            state[name] = {**state.get(name, {}), LOCAL_GRAD: value}
        return state

    def _note_sampler(self, iterator: Any) -> int | None:
        """The ``DistributedSampler`` behind a DataLoader iterator: kept as meta; its epoch returned."""
        from torch.utils.data.distributed import DistributedSampler
        sampler = getattr(getattr(iterator, "_index_sampler", None), "sampler", None)
        if not isinstance(sampler, DistributedSampler):
            return None
        self.sampler = {"kind": "DistributedSampler", "shuffle": bool(sampler.shuffle),
                        "seed": int(sampler.seed), "num_replicas": int(sampler.num_replicas),
                        "rank": int(sampler.rank), "drop_last": bool(sampler.drop_last)}
        return int(sampler.epoch)

    def annotate(self, trace: Any) -> None:
        """``meta["distributed"]`` of the rank's trace."""
        sampler = dict(self.sampler) if self.sampler else None
        trace.meta["distributed"] = {"rank": self.rank, "world_size": self.world_size,
                                     "backend": self.backend, "sampler": sampler,
                                     "local_grads": LOCAL_GRAD}
