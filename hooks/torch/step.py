"""The step state machine of one PyTorch training loop: a step opens at ``backward`` and
closes at the update.

Why a state machine: a PyTorch loop has no "step" event. A step opens when ``backward``
runs (the graph shows the batch, the predictions, the loss; the parameters are
snapshotted) and closes either at ``optimizer.step()`` (the optimizer hooks) or, in a
loop with a hand-written update, at the next ``backward`` or the end of the block -
whatever in-place update the loop made under ``no_grad`` is what changed the values.
:class:`StepCycle` keeps the open :class:`Step` and which of the two ways the loop
updates (``mode``), and records each closed step.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Callable

import torch

from . import optim
from .graph import Graph
from .placement import LoaderBatches, place

if TYPE_CHECKING:  # pragma: no cover
    from .run import TorchRun


class Step:
    """What one step has shown so far (filled at backward, closed at the update)."""

    __slots__ = ("epoch", "batch", "rows", "pred", "loss", "before", "grads", "v0", "sets",
                 "stale", "batch_size", "record", "lr", "pre_version", "params")

    def __init__(self, record: bool) -> None:
        self.record = record          # False on the steps every=k skips
        self.rows = self.pred = None
        self.before = {}              # id(param) -> value before the update (recorded steps)
        self.grads = None             # id(param) -> gradient (full) or its norm (summary)
        self.v0 = {}                  # id(param) -> _version after backward
        self.sets = {}                # id(param) -> ``param.data = ...`` assignments since backward
        self.stale = {}               # id(param) -> gradient left over from an earlier update
        self.lr = None
        self.pre_version = None       # id(param) -> _version when optimizer.step() began
        self.batch_size = None


class StepCycle:
    """Opens a run's steps at ``backward`` and closes them at the update (see the module doc).

    ``mode`` is ``"unknown"`` until the loop shows how it updates: ``"optimizer"``
    (a ``torch.optim`` step) or ``"manual"`` (in-place writes under ``no_grad``).
    """

    def __init__(self, run: TorchRun) -> None:
        self.run = run
        self.pending: Step | None = None
        self.mode = "unknown"
        self._consumed: dict[int, bool] = {}    # id(param) -> an update used its gradient

    # --------------------------------------------------------------- open
    def settle_open_step(self) -> None:
        """A new ``backward`` while a step is open: close it (manual loop) or fold it in."""
        if self.pending is None:
            return
        if self.mode == "optimizer":
            self.run.recorder.note(f"step {self.run.recorder.steps_seen + 1}: a second backward before "
                                   "optimizer.step(); the earlier one is folded into this step")
            self.pending = None
        else:
            self.mode = "manual"
            self.close_manual()

    def open(self, loss: torch.Tensor, g: Graph, params: list[torch.Tensor], loader: LoaderBatches,
             take_slices: Callable[[], Any]) -> None:
        """Open the step ``backward(loss)`` starts: parameters, loss, batch, placement."""
        run = self.run
        step_params = run.adopt(params, g)
        st = Step(record=run.recorder.should_record())
        st.params = step_params
        st.loss = float(loss.detach())
        st.batch_size = int(g.x.shape[0]) if g.x is not None else None
        if st.batch_size is None:
            st.batch_size = loader.latest_size()
        # gradients left over from a step that already used them
        for p in st.params:
            gr = p.grad
            st.stale[id(p)] = bool(gr is not None and self._consumed.get(id(p)) and _nonzero(gr))
        if st.record:
            st.before = {id(p): p.detach().clone() for p in st.params}
        place(run, st, g, loader, take_slices)
        self.pending = st

    def after_backward(self) -> None:
        """The gradients are in: note the versions, keep the gradients (manual loops)."""
        st = self.pending
        if st is None:
            return
        for p in st.params:
            self._consumed[id(p)] = False
            st.v0[id(p)] = p._version
        st.sets = {}
        if st.record and self.mode != "optimizer":
            st.grads = self._grab_grads(st.params)

    # -------------------------------------------------------------- close
    def before_optimizer(self, opt: torch.optim.Optimizer) -> None:
        """``optimizer.step()`` begins on the open step: versions, learning rate, gradients."""
        st = self.pending
        self.mode = "optimizer"
        st.pre_version = {id(p): p._version for p in st.params}
        group = optim.group_of(opt, st.params[0]) or opt.param_groups[0]
        st.lr = float(group["lr"])
        if st.record:
            st.grads = self._grab_grads(st.params)

    def close_with_optimizer(self, opt: torch.optim.Optimizer) -> None:
        """``optimizer.step()`` ended: count the writes, read the state, record the step."""
        st = self.pending
        self.pending = None
        run = self.run
        if run.opt_meta is None:
            run.opt_meta = optim.optimizer_spec(opt)
        counts = {}
        for p in st.params:
            k = id(p)
            outside = st.pre_version[k] - st.v0.get(k, st.pre_version[k]) + st.sets.get(k, 0)
            counts[k] = outside + int(p._version != st.pre_version[k])
        state, opt_step = {}, None
        if st.record and run.recorder.full:
            for p in st.params:
                slots, step = optim.state_arrays(opt, p)
                if slots:
                    state[run.names[id(p)]] = slots
                opt_step = step if step is not None else opt_step
        else:
            for p in st.params:
                s = opt.state.get(p)
                if s and "step" in s:
                    opt_step = float(s["step"])
                    break
        self._record(st, counts, state, opt_step)

    def close_manual(self) -> None:
        """Close the open step of a hand-written update: what changed the values is the update."""
        st = self.pending
        self.pending = None
        counts = {id(p): p._version - st.v0.get(id(p), p._version) + st.sets.get(id(p), 0)
                  for p in st.params}
        self._record(st, counts, None, None)

    # ------------------------------------------------------------- record
    def _grab_grads(self, params):
        """The gradients as they are now: copies (full capture) or just their norms (summary)."""
        if self.run.recorder.full:
            return {id(p): (None if p.grad is None else p.grad.detach().clone()) for p in params}
        have = [p for p in params if p.grad is not None]
        norms = torch._foreach_norm([p.grad.detach() for p in have]) if have else []
        return {id(p): n for p, n in zip(have, norms)}

    def _record(self, st, counts, state, opt_step):
        run = self.run
        rec, names = run.recorder, run.names
        for p in st.params:
            self._consumed[id(p)] = True
        extra = {} if opt_step is None else {"opt_step": opt_step}
        if not st.record:
            rec.record_step(epoch=st.epoch, batch=st.batch, params_before={},
                            params_after={}, loss=st.loss, extra=extra)
            return
        cols = {}
        for p in st.params:
            n = names[id(p)]
            cols["updates_" + n] = counts.get(id(p), 0)
            cols["stale_grad_" + n] = int(st.stale.get(id(p), False))
        if rec.full:
            grads_t = st.grads or {}
            before = {names[k]: t.numpy() for k, t in st.before.items()}
            after = {names[id(p)]: p.detach().numpy() for p in st.params}
            grads = {names[k]: g.numpy() for k, g in grads_t.items() if g is not None}
            rec.record_step(epoch=st.epoch, batch=st.batch, params_before=before, params_after=after,
                            grads=grads, rows=st.rows, y_pred=st.pred, loss=st.loss, lr=st.lr,
                            batch_size=st.batch_size, state=state, extra=extra)
        else:
            cols.update(_summary_norms(st, names))
            rec.record_step(epoch=st.epoch, batch=st.batch, params_before={},
                            params_after={}, loss=st.loss, lr=st.lr, batch_size=st.batch_size, extra=extra)
        run.step_columns.append(cols)


def _summary_norms(st: Step, names: dict) -> dict:
    """Summary capture: value, update and gradient norms per parameter, in one batch of ops."""
    cols = {}
    grads_t = st.grads or {}
    with torch.no_grad():
        ps = [p.detach() for p in st.params]
        bs = [st.before[id(p)] for p in st.params]
        gs = [grads_t.get(id(p)) for p in st.params]      # gradient norms already
        have = [g for g in gs if g is not None]
        norms = list(torch._foreach_norm(bs)) + list(torch._foreach_norm(torch._foreach_sub(ps, bs))) + have
        values = torch.stack([v.double() for v in norms]).tolist() if len(norms) > 0 else []
        k = len(ps)
        g_iter = iter(values[2 * k:])
        for i, p in enumerate(st.params):
            n = names[id(p)]
            cols["value_norm_" + n] = values[i]
            cols["update_norm_" + n] = values[k + i]
            cols["grad_norm_" + n] = math.nan if gs[i] is None else next(g_iter)
    return cols


def _nonzero(grad: torch.Tensor) -> bool:
    """Whether a gradient holds anything: a spread sample of 1024 values decides for big
    tensors (a zeroed gradient is zero everywhere), the whole tensor for small ones."""
    flat = grad.detach().reshape(-1)
    n = flat.numel()
    if n > 4096:
        flat = flat[:: n // 1024]
    return bool(flat.any())
