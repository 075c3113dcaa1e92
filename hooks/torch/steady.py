"""The steady state of a summary capture: what one step taught the hook, reused by the next.

Why: a summary step stores a handful of numbers per parameter (the norms, the update
counts, a stale-gradient flag), so at S4's ~1.4 ms a step the hook's own Python is most
of its cost: which tensors the step records, their names and column names, the reused
before-buffers. These depend only on the
step's *structure* - the graph signature the walk of the loss wrote down, the trained
tensors that walk met (by identity) and the run's program - so :class:`Steady` learns
them once from a step that went the plain way and hands them to every later step with
the same structure (a full capture's recorded steps take its tensors and column names and
snapshot the plain way, against the recorder's rows). Anything else (another graph, another
tensor, another program, gradient accumulation, a DDP rank) takes the plain path, and a step that
goes the plain way with another structure teaches the steady state afresh: no value
ever depends on the shortcut (``tests/hooks/test_torch_hot_path.py`` records the same
run both ways and compares the tables bit for bit).

Steps that full capture does not record go further (:meth:`hooks.torch.step.StepCycle.short_way`):
once the structure is known, such a step after one of a hand-written update skips the plain
path's questions; a skipped step only counts the step closing, keeps what a later recorded
step reads (the gradients an update used, the parameters' memory for writes between steps)
and places the new step; with ``every=k`` the loss module's predictions hook is on only
around recorded steps (:class:`hooks.torch.placement.PredictionsHook`).

:data:`ENABLED` switches the shortcuts off (the tests' plain twin).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:  # pragma: no cover
    from .graph import Walk
    from .plan import Plan

__all__ = ["ENABLED", "Steady", "sample"]

ENABLED = True
_SAMPLE = 1024          # values of a big gradient the stale test (``step._stale``) reads (:func:`sample`) ...
_RUNS = 64              # ... in this many runs of neighbours


class Steady:
    """One run's learned step structure (see the module doc); empty until :meth:`learn`."""

    __slots__ = ("signature", "walk_params", "walk_ids", "plan", "params", "ids", "columns", "before")

    def __init__(self) -> None:
        self.signature: tuple | None = None
        self.walk_params: list[torch.Tensor] = []  # the trained tensors the walk met (kept alive: ids stay theirs)
        self.walk_ids: list[int] = []
        self.plan: Plan | None = None
        self.params: list[torch.Tensor] = []       # the step's recorded tensors, the run's order
        self.ids: list[int] = []
        self.columns: list[tuple[str, ...]] = []   # per param: value/update/grad norm, updates, stale
        self.before: list[torch.Tensor] = []       # the reused before-buffers, one per param

    def matches(self, w: Walk, plan: Plan | None) -> bool:
        """Whether a step with this walk and program has the learned structure."""
        if not ENABLED or self.signature is None or plan is None or plan is not self.plan:
            return False
        return w.signature == self.signature and list(map(id, w.params)) == self.walk_ids

    def learn(self, w: Walk, plan: Plan | None, params: list[torch.Tensor], names: dict[int, str]) -> None:
        """Remember the structure of a step that went the plain way (``plan``: the run's
        program covering it; without one nothing is learned, and what was learned stays for
        the steps that come back to it)."""
        if plan is None:
            return
        if self.signature == w.signature and self.plan is plan and len(params) == len(self.params) \
                and all(a is b for a, b in zip(params, self.params)):
            return
        self.signature, self.walk_params, self.plan = w.signature, list(w.params), plan
        self.walk_ids = [id(p) for p in w.params]
        self.params, self.ids = list(params), [id(p) for p in params]
        self.columns = [_names(names[id(p)]) for p in params]
        self.before = []

    def snapshot(self) -> tuple[dict[int, torch.Tensor], list[torch.Tensor]]:
        """The parameters' values now, copied into the reused buffers with one
        ``_foreach_copy_`` (``id(param)`` -> buffer, as the plain path's snapshot), and
        their norms, taken now while the buffers are in the cache: the same op on the same
        bits as the plain path's norm of the buffers when the step closes (nothing but
        the step writes them), without reading them back from memory then."""
        src = [p.detach() for p in self.params]
        bufs = self.before
        if len(bufs) != len(src) or any(b.shape != s.shape or b.dtype != s.dtype or b.device != s.device
                                        for b, s in zip(bufs, src)):
            bufs = self.before = [torch.empty(s.shape, dtype=s.dtype, device=s.device) for s in src]
        torch._foreach_copy_(bufs, src)
        return dict(zip(self.ids, bufs)), list(torch._foreach_norm(bufs)) if bufs else []


def _names(name: str) -> tuple[str, ...]:
    return ("value_norm_" + name, "update_norm_" + name, "grad_norm_" + name,
            "updates_" + name, "stale_grad_" + name)


def sample(grad: torch.Tensor) -> torch.Tensor:
    """The values the stale-gradient test reads: all of a small gradient (itself); of a big one,
    64 runs of 16 neighbours spread evenly over it (1024 values in 64 cache lines: a
    gradient zeroed just before ``backward`` is no longer in the cache, and 1024 values
    a cache line apart cost 1024 misses), as one view (a copy when not contiguous)."""
    n = grad.numel()
    if n <= 4 * _SAMPLE:
        return grad
    if not grad.is_contiguous():
        grad = grad.reshape(-1)
    return torch.as_strided(grad, (_RUNS, _SAMPLE // _RUNS), (n // _RUNS, 1), grad.storage_offset())
