"""The step state machine of one PyTorch training loop: a step opens at ``backward`` and
closes at the update.

Why a state machine: a PyTorch loop has no "step" event. A step opens when ``backward``
runs (the graph shows the trained tensors and the loss; the parameters are
snapshotted) and closes either at ``optimizer.step()`` (the optimizer hooks) or, in a
loop with a hand-written update, at the next ``backward`` or the end of the block -
whatever in-place update the loop made under ``no_grad`` is what changed the values.
A ``backward`` followed by another ``backward`` with no update in between is not a step
of its own (issue 16): it is folded into the next one (gradient accumulation).
:class:`StepCycle` keeps the open :class:`Step` and which of the two ways the loop
updates (``mode``), and hands each closed step to the run to record.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from tracer.param_buffers import same_bytes

from . import gradops, micro, optim
from .graph import Walk
from .placement import place
from .snapshots import SnapshotPool, Snapshots
from .steady import Steady, sample

_CHAIN_MIN = 4096     # elements: below this a copy costs less than asking the recorder
_NUMPY = (torch.float16, torch.float32, torch.float64)   # stored as they are (bfloat16 is widened)

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

    from .placement import LoaderBatches
    from .plan import Plan
    from .run import TorchRun


class Step:
    """What one step has shown so far (filled at backward, closed at the update)."""

    __slots__ = ("epoch", "batch", "rows", "pred", "loss", "before", "grads", "v0", "sets", "stale",
                 "batch_size", "record", "lr", "pre_version", "params", "plan", "signature", "wrote",
                 "loader_batch", "micro", "grad_ops", "snaps", "staged", "steady",
                 "value_norms", "rows_of")

    def __init__(self, record: bool) -> None:
        self.record = record          # False on the steps every=k skips
        self.epoch = self.batch = 1
        self.rows = self.pred = None
        self.loss = None
        self.before = {}              # id(param) -> value before the update (recorded steps)
        self.grads = None             # id(param) -> gradient (full) or its norm (summary)
        self.v0 = {}                  # id(param) -> _version after backward
        self.sets = {}                # id(param) -> ``param.data = ...`` assignments since backward
        self.stale = {}               # id(param) -> gradient left over from an earlier update
        self.lr = None
        self.pre_version = None       # id(param) -> _version when optimizer.step() began
        self.batch_size = None
        self.params: list[torch.Tensor] = []
        self.plan: Plan | None = None  # the step program this step ran (None: not known)
        self.signature = None
        self.wrote = False            # an in-place write to a parameter was seen since backward
        self.loader_batch = None      # the DataLoader batch the step trained on, if any
        self.micro: list[Step] = []   # earlier backward passes of this step (gradient accumulation)
        self.grad_ops = None          # gradient changes before the update (:mod:`.gradops`)
        self.snaps: Snapshots | None = None   # the reused buffers ``before``/``grads`` live in
        self.staged: dict = {}        # param name -> the recorder's gradient row the step fills in place
        self.steady: Steady | None = None   # the learned structure the step has (:mod:`.steady`), if any
        self.value_norms: list | None = None  # norms of ``before`` taken with its snapshot (summary)
        self.rows_of: dict = {}       # id(tensor) -> (tensor, the recorder's row it views): :func:`recorder_row`


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
        self.kept: list[Step] = []              # backward passes with no update yet (:mod:`.micro`)
        self.pool = SnapshotPool()
        self.steady = Steady()                  # summary capture's learned step structure

    def release(self, st: Step) -> None:
        """A step was recorded or dropped: its snapshot buffers serve the next steps."""
        snaps, st.snaps = st.snaps, None
        st.before, st.grads = {}, None
        self.pool.give(snaps)
        if st.staged:
            rec = self.run.recorder
            for name, row in st.staged.items():
                rec.unstage_grad(name, row)
            st.staged = {}
        st.rows_of = {}

    # --------------------------------------------------------------- open
    def settle_open_step(self, signature: tuple | None = None) -> None:
        """A new ``backward`` while a step is open: close it, or keep it as a micro-step of the
        next one when nothing updated (``signature``: the new backward's graph)."""
        st = self.pending
        if st is None:
            return
        if self.mode == "optimizer" or not self._updated(st):
            self.pending = None
            self.kept = [*st.micro, st]
            st.micro = []
            if signature != st.signature:
                self.run.folded(st)     # another computation: its program is not the step's
        else:
            self.mode = "manual"
            self.close_manual()

    def _updated(self, st: Step) -> bool:
        """Whether anything changed the step's parameters since its backward."""
        if st.wrote or any(p._version != st.v0.get(id(p), p._version) for p in st.params):
            return True
        if st.before:
            return any(not torch.equal(p.detach(), st.before[id(p)]) for p in st.params if id(p) in st.before)
        return True                    # not snapshotted: cannot tell, count it (0.1.0's behaviour)

    def open(self, loss: torch.Tensor, w: Walk, plan: Plan | None, loader: LoaderBatches,
             shape: Plan | None = None) -> None:
        """Open the step ``backward(loss)`` starts: parameters, loss, batch, placement.

        ``plan`` is the run's program when it covers the step; ``shape`` a program built for
        the step's graph (the run's, or one a restart at this step will adopt), which places
        the batch's rows either way."""
        run = self.run
        run.between.opened()
        run.shared.new_iteration()
        st = Step(record=run.recorder.should_record())
        # steps reuse a learned structure (full ones still snapshot the plain way: the recorder's rows)
        steady = self.steady if run.dist is None else None
        if steady is not None and steady.matches(w, plan):
            st.steady, st.params = steady, list(steady.params)
        else:
            st.params = run.step_params(w, plan or shape)
        st.plan, st.signature = plan, w.signature
        st.loss = float(loss.detach())
        kept, self.kept = self.kept, []
        if kept and not micro.carried(st.params, _nonzero):
            for m in kept:              # zeroed since: that backward was not part of this step
                self.release(m)
            kept = []
        if st.record:                   # gradients left over from a step that used them (a column of recorded steps)
            st.stale = _stale(st.params, self._consumed)
        if kept:
            first = kept[0]                 # its snapshot is the step's ``before``: its buffers move too
            st.snaps, first.snaps = first.snaps, None
            micro.join(st, kept)
            for m in kept[1:]:
                self.release(m)
        elif st.record and st.steady is not None and not run.recorder.full:
            st.before, st.value_norms = st.steady.snapshot()         # the reused buffers, in one copy
        elif st.record:
            st.snaps = snaps = self.pool.take()
            st.before = self._snapshot_before(st, snaps)           # detached copies: no graph either way
        place(run, st, w, loader, shape or plan)
        self.hook_predictions()
        if steady is not None and st.steady is None:
            steady.learn(w, plan, st.params, run.names)
        self.pending = st

    def short_way(self, loss: torch.Tensor, w: Walk, loader: LoaderBatches) -> bool:
        """``backward`` of a step in the learned structure (:mod:`.steady`) that full capture does
        not record (skipped by ``every=k``, or summary), after one of a hand-written update (or
        none): what the plain path does - close the open step (a skipped one: count it, keep what
        continuity and the stale test read; a summary one: record it), open and place the new
        one - without its questions, which the structure answers. False: nothing done."""
        run, st, plan, rec = self.run, self.pending, self.run.plan, self.run.recorder
        if self.kept or run.deferred is not None or run.dist is not None or plan is None:
            return False
        if st is not None and (self.mode != "manual" or not st.wrote or st.steady is None or st.micro
                               or st.plan is None or st.snaps is not None or (st.record and rec.full)):
            return False
        record = rec.should_record(rec.steps_seen + (1 if st is None else 2))
        if (record and rec.full) or not self.steady.matches(w, plan):
            return False
        if run.frozen and run.trains_other_tensors(w.params):
            return False
        if st is not None and st.record:
            self.close_manual()
        elif st is not None:             # close_manual and _finish, for a step that records nothing
            self.pending = None
            consumed = self._consumed
            for p in st.params:
                consumed[id(p)] = True
            run.between.steps += 1
            run.between.closed(st.params)
            rec.record_step(epoch=st.epoch, batch=st.batch, params_before={}, params_after={}, loss=st.loss,
                            extra={})
        self._open_steady(loss, w, loader, record)
        return True

    def _open_steady(self, loss: torch.Tensor, w: Walk, loader: LoaderBatches, record: bool) -> None:
        """:meth:`open` of a step in the learned structure, after :meth:`short_way`'s questions."""
        run = self.run
        run.between.opened()
        run.shared.new_iteration()
        nxt = Step(record=record)
        nxt.steady, nxt.params = self.steady, list(self.steady.params)
        nxt.plan, nxt.signature = run.plan, w.signature
        nxt.loss = float(loss.detach())
        if record:
            nxt.stale = _stale(nxt.params, self._consumed)
            nxt.before, nxt.value_norms = self.steady.snapshot()
        place(run, nxt, w, loader, run.plan)
        self.hook_predictions()
        self.pending = nxt

    def hook_predictions(self) -> None:
        """At a step's open: the predictions hook (:class:`.placement.PredictionsHook`) is on for the
        forward passes a recorded step reads (this step's next micro-batches, the next step's)."""
        rec = self.run.recorder
        n = rec.steps_seen
        self.run.pred.on(rec.should_record(n + 1) or rec.should_record(n + 2))

    def _snapshot_before(self, st: Step, snaps: Snapshots) -> dict:
        """The parameters' values before the update: a big CPU parameter whose bytes are still
        those of the ``after`` the recorder holds last (the usual case: nothing wrote it
        between the steps) is that row itself, compared once and not copied
        (:meth:`tracer.recorder.Recorder.chained_row`); the others are copied into the
        step's reused buffers."""
        rec, names, params = self.run.recorder, self.run.names, st.params
        chained, copies = {}, []
        for p in params:
            v = p.detach()
            row = rec.chained_row(names[id(p)]) if v.numel() >= _CHAIN_MIN and v.device.type == "cpu" else None
            if row is not None and v.dtype in _NUMPY and v.is_contiguous() and _same(v.numpy(), row):
                chained[id(p)] = _viewing(st, row, v.shape)
            else:
                copies.append((id(p), v))
        if not chained:
            return snaps.copy_many(snaps.before, copies)
        chained.update(snaps.copy_many(snaps.before, copies))
        return {id(p): chained[id(p)] for p in params}     # the run's parameter order

    def _grads_in_place(self, st: Step) -> dict:
        """Big CPU gradients copied straight into the recorder's next rows (one copy, not two:
        :meth:`tracer.recorder.Recorder.stage_grad`); ``id(param)`` -> that row as a tensor."""
        rec, names = self.run.recorder, self.run.names
        out, dst, src = {}, [], []
        for p in st.params:
            g = p.grad
            if g is None:
                continue
            g = g.detach()
            row = _staged_row(rec, st, names[id(p)], g)
            if row is not None:
                out[id(p)] = row
                dst.append(row)
                src.append(g)
        if dst:
            torch._foreach_copy_(dst, src)
        return out

    def after_backward(self) -> None:
        """The gradients are in: note the versions, keep the gradients (manual loops)."""
        st = self.pending
        if st is None:
            return
        for p in st.params:
            self._consumed[id(p)] = False
            st.v0[id(p)] = p._version
        st.sets = {}
        st.wrote = False
        if st.record and self.mode != "optimizer":
            st.grads = self._grab_grads(st)
        if self.mode != "manual":
            gradops.note(st)

    # -------------------------------------------------------------- close
    def before_optimizer(self, opt: torch.optim.Optimizer) -> None:
        """``optimizer.step()`` begins on the open step: versions, learning rate, gradients."""
        st = self.pending
        self.mode = "optimizer"
        st.pre_version = {id(p): p._version for p in st.params} if st.record else {}   # a recorded step's
        if st.record:                                                   # columns only: none for skipped ones
            st.lr = float((optim.group_of(opt, st.params[0]) or opt.param_groups[0])["lr"])
        gradops.check(st, "between backward and optimizer.step()")
        ops = st.grad_ops
        if st.record and not (ops is not None and ops.raw):
            st.grads = self._grab_grads(st)
        if st.grads is not None and ops is not None:
            for k in ops.changed:       # not the gradient backward computed, nor one modelled
                st.grads.pop(k, None)

    def close_with_optimizer(self, opt: torch.optim.Optimizer) -> None:
        """``optimizer.step()`` ended: count the writes, read the state, record the step."""
        st = self.pending
        self.pending = None
        run = self.run
        run.use_optimizer(opt)
        counts = {}
        for p in st.params if st.record else ():
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
            opt_step = optim.step_count(opt, st.params)
        run.grad_log.add(st, run.names, run.recorder.steps_seen + 1)
        run.shared.stepped(opt, run.names, run.recorder.steps_seen + 1)
        self._finish(st, counts, state, opt_step)

    def close_manual(self) -> None:
        """Close the open step of a hand-written update: what changed the values is the update."""
        st = self.pending
        self.pending = None
        counts = {id(p): p._version - st.v0.get(id(p), p._version) + st.sets.get(id(p), 0)
                  for p in st.params}
        self._finish(st, counts, None, None)

    def _finish(self, st, counts, state, opt_step):
        for p in st.params:
            self._consumed[id(p)] = True
        self.run.between.steps += 1
        self.run.between.closed(st.params)
        self.run.record(st, counts, state, opt_step)

    # ------------------------------------------------------------- values
    def _grab_grads(self, st: Step) -> dict:
        """The gradients as they are now: copies into the step's buffers (full capture) or
        just their norms (summary)."""
        params = st.params
        if self.run.recorder.full:
            if st.snaps is None:
                st.snaps = self.pool.take()
            out = self._grads_in_place(st)          # detached copies: no graph, no ``no_grad`` needed
            out.update(Snapshots.copy_many(st.snaps.grads, [(id(p), p.grad.detach()) for p in params
                                                            if p.grad is not None and id(p) not in out]))
            return {id(p): out.get(id(p)) for p in params}
        have = [p for p in params if p.grad is not None]
        norms = torch._foreach_norm([p.grad.detach() for p in have]) if have else []
        return {id(p): n for p, n in zip(have, norms)}


def _staged_row(rec, st: Step, name: str, g: torch.Tensor) -> torch.Tensor | None:
    """The recorder's next gradient row of ``name`` as a tensor shaped like ``g`` (the one the
    step holds already, or a new one), or None when ``g`` is copied the usual way."""
    row = st.staged.get(name)
    if row is None:
        if g.numel() < _CHAIN_MIN or g.device.type != "cpu" or g.dtype not in _NUMPY:
            return None
        row = rec.stage_grad(name)
        if row is None:
            return None
        if row.dtype != g.numpy().dtype or row.size != g.numel():
            rec.unstage_grad(name, row)
            return None
        st.staged[name] = row
    return _viewing(st, row, g.shape)


def _viewing(st: Step, row, shape) -> torch.Tensor:
    """A tensor of ``shape`` over the recorder's ``row``, noted in the step (:func:`recorder_row`)."""
    t = torch.from_numpy(row).view(shape)
    st.rows_of[id(t)] = (t, row)
    return t


def recorder_row(st: Step, t: torch.Tensor) -> np.ndarray | None:
    """The recorder's own row ``t`` views (:func:`_viewing`), else None: handed the very array it
    gave out, the recorder knows it without asking addresses (~2 us each, :mod:`tracer.buffers`)."""
    pair = st.rows_of.get(id(t))
    return pair[1] if pair is not None and pair[0] is t else None


def _same(value, row) -> bool:
    """Whether a parameter's values are, bit for bit, the recorder's row (same dtype too)."""
    return value.dtype == row.dtype and same_bytes(value, row)


def _stale(params: list[torch.Tensor], consumed: dict[int, bool]) -> dict[int, bool]:
    """``id(p)`` -> whether ``p.grad`` still holds a gradient an earlier update used (not
    zeroed since): one ``count_nonzero`` of each such gradient's sample."""
    out = {}
    for p in params:
        k = id(p)
        out[k] = bool(consumed.get(k)) and (g := p.grad) is not None and _nonzero(g)
    return out


def _nonzero(grad: torch.Tensor) -> bool:
    """Whether a gradient holds anything: a spread sample of 1024 values decides for big
    tensors (a zeroed gradient is zero everywhere), the whole tensor for small ones
    (:func:`hooks.torch.steady.sample`)."""
    return bool(torch.count_nonzero(sample(grad)))
