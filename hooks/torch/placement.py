"""Where a step sits: its epoch and batch number, its rows, its batch size and predictions.

Why apart from the step cycle: a PyTorch loop never says "epoch 2, batch 5". The
numbers are read off the DataLoader iterators (a new or restarted iterator is a new
epoch), or, without a loader, off the rows (a batch that repeats a row of the current
epoch starts the next one; a full-batch step is an epoch of its own).
:class:`LoaderBatches` follows the loader batches of a ``trace_torch`` block,
:class:`EpochCounter` counts one run's epochs, and :func:`place` fills a freshly
opened step: the rows come from the loader, or from the batch tensor the step
program located in the step's graph (:mod:`hooks.torch.sources`); the predictions
from a loss module's pre-hook or from where the graph saved them.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from .data import as_rows
from .graph import Walk, read_saved
from .layout import batch_source
from .sources import LoaderBatch

if TYPE_CHECKING:  # pragma: no cover
    from .plan import Plan
    from .run import TorchRun
    from .step import Step


class LoaderBatches:
    """The DataLoader batches of a ``trace_torch`` block: the latest one, and whether a step used it."""

    def __init__(self) -> None:
        self.latest: LoaderBatch | None = None
        self._used: tuple[int, int] | None = None
        self._n_iterators = 0

    def on_batch(self, iterator: Any, indices: Any, data: Any) -> None:
        """The loader patch's callback: remember the batch, numbering its iterator."""
        serial = iterator.__dict__.get("_steptrace_serial")
        if serial is None:
            self._n_iterators += 1
            serial = iterator.__dict__["_steptrace_serial"] = self._n_iterators
        self.latest = LoaderBatch(iterator, indices, data, serial, iterator._num_yielded)

    def fresh(self) -> LoaderBatch | None:
        """The latest batch if it holds tensors and no step has used it yet."""
        b = self.latest
        if b is None or self._used == (b.serial, b.number):
            return None
        data = b.data
        if not isinstance(data, (list, tuple)) or not data or not isinstance(data[0], torch.Tensor):
            return None
        return b

    def fresh_tensors(self) -> list | None:
        """The fresh batch's tensors (for the program builder), or None."""
        b = self.fresh()
        return None if b is None else list(b.data)

    def use(self, batch: LoaderBatch) -> None:
        """A step took ``batch``."""
        self._used = (batch.serial, batch.number)


class EpochCounter:
    """One run's epoch and batch numbers, from the loader's iterators or from the rows."""

    def __init__(self) -> None:
        self.epoch = 0
        self.batch = 0
        self._serial: int | None = None
        self._epoch_rows: set[int] = set()

    def at_loader_batch(self, batch: LoaderBatch) -> None:
        """A step drew from a loader: a new iterator (or a restarted one) is a new epoch."""
        if batch.serial != self._serial or batch.number < self.batch:
            self.epoch += 1
            self._serial = batch.serial
        self.batch = batch.number

    def at_rows(self, rows: np.ndarray, n_rows: int | None, revisits: bool) -> None:
        """A step's rows are known but not its loader: a repeated row (or all rows seen)
        starts the next epoch. Rows that never repeat (``revisits`` False) count batches only."""
        if not revisits:
            self.at_unplaced()
            return
        r = set(rows.tolist())
        if self.epoch == 0 or (r & self._epoch_rows) or (n_rows is not None and len(self._epoch_rows) >= n_rows):
            self.epoch += 1
            self.batch = 0
            self._epoch_rows = set()
        self._epoch_rows |= r
        self.batch += 1

    def at_unplaced(self) -> None:
        """Neither loader nor rows: one more batch of the current epoch (at least epoch 1)."""
        self.epoch = max(self.epoch, 1)
        self.batch += 1

    def position(self) -> tuple[int, int]:
        """``(epoch, batch)``, both from 1."""
        return max(self.epoch, 1), max(self.batch, 1)


class PredictionsHook:
    """A loss module's forward pre-hook keeping the prediction it is handed (``stash``): where
    full capture takes a step's predictions when the program names a loss module.

    Why it comes and goes (:meth:`on`): any forward hook sends every call of the module down
    ``nn.Module``'s slow path (~2 us a call), and only the forward passes of recorded steps
    need it, so with ``every=k`` the step cycle keeps it on only from the step before a
    recorded one (:meth:`hooks.torch.step.StepCycle.hook_predictions`). Put back, it comes
    after any pre-hook the user added to the loss module meanwhile."""

    def __init__(self) -> None:
        self.stash: torch.Tensor | None = None
        self._module: torch.nn.Module | None = None
        self._pos = 0
        self._handle = None

    def attach(self, module: torch.nn.Module, pos: int) -> None:
        """The program's loss module and which of its arguments is the prediction; hook it now."""
        self.release()
        self._module, self._pos = module, pos
        self.on(True)

    def on(self, on: bool) -> None:
        """Put the hook on the module (``on``) or take it off; nothing without a module."""
        if self._module is None or (self._handle is not None) == on:
            return
        if on:
            self._handle = self._module.register_forward_pre_hook(self._hook)
        else:
            self._handle.remove()
            self._handle = None

    def release(self) -> None:
        """Take the hook off for good (the run ends, or its program is dropped)."""
        self.on(False)
        self._module = None

    def _hook(self, module: torch.nn.Module, args: tuple) -> None:
        try:
            if torch.is_grad_enabled() and len(args) > self._pos:
                self.stash = args[self._pos]
        except Exception:  # a hook on the user's module must never raise
            pass


def place(run: TorchRun, st: Step, w: Walk, loader: LoaderBatches, shape: Plan | None = None) -> None:
    """Epoch, batch number, batch size, rows and (full capture) predictions of a new step;
    ``shape`` (a plan for the step's graph) says where the batch and predictions are."""
    plan = shape
    layout = plan.layout if plan is not None and plan.ok else None
    key_loc = layout.key.loc if layout is not None and layout.key is not None else None
    x = read_saved(w, key_loc)
    batch = loader.fresh()
    if batch is not None and layout is not None and layout.kind != "loader":
        batch = None                                   # the program's batch is not a loader's
    if batch is not None and x is not None and batch_source(x, list(batch.data)) is None:
        batch = None                                   # a loader was read, but not for this step
    st.loader_batch = batch
    if batch is not None:
        loader.use(batch)
        st.batch_size = int(batch.data[0].shape[0])
    elif x is not None:
        st.batch_size = int(x.shape[0])
    elif layout is not None:
        st.batch_size = layout.batch_size
    if st.plan is not None and not st.plan.covers(st.signature, st.batch_size):
        st.plan = None                                 # a batch size the program did not bake in
    _rows_and_clock(run, st, x, layout)
    if st.record and run.recorder.full and plan is not None:
        st.pred = _predictions(run, plan, st, w)
    run.pred.stash = None


def replace(run: TorchRun, st: Step) -> None:
    """Place a step again in another run (a restart the optimizer showed)."""
    layout = st.plan.layout if st.plan is not None and st.plan.ok else None
    _rows_and_clock(run, st, None, layout, keep_rows=True)


def _rows_and_clock(run: TorchRun, st: Step, x, layout, keep_rows: bool = False) -> None:
    batch = st.loader_batch
    if batch is not None:
        # a summary trace keeps no rows, nor does a step every=k skips (unless its source fills the
        # data table from the batches), and the loader's iterators number the epochs
        rows = run.rows.from_loader(batch) if run.recorder.full and (st.record or run.rows.fills_data()) else None
        run.clock.at_loader_batch(batch)
    else:
        if layout is not None:
            run.rows.from_layout(layout)
        rows = st.rows if keep_rows else (run.rows.locate(x) if layout is not None else None)
        if rows is not None:
            source = run.rows.source
            run.clock.at_rows(rows, run.recorder.n_rows, revisits=source is None or source.revisits)
        else:
            run.clock.at_unplaced()
    st.rows = rows
    st.epoch, st.batch = run.clock.position()


def _predictions(run: TorchRun, plan, st: Step, w: Walk) -> np.ndarray | None:
    """The predictions the loss saw (a copy, one row per batch row), or None."""
    if plan.pred_module is None and plan.pred_loc is None:
        return None                         # no source at later steps: none at all, not one step's
    t, plan.build_pred = plan.build_pred, None
    if t is not None and not isinstance(t, torch.Tensor):
        t = None
    if t is None and plan.pred_module is not None:
        t = run.pred.stash
    if t is None:
        t = read_saved(w, plan.pred_loc)
    if t is None or t.dim() == 0 or (st.batch_size is not None and t.shape[0] != st.batch_size):
        return None
    return np.array(as_rows(t.detach()), copy=True)
