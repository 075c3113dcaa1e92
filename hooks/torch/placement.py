"""Where a step sits: its epoch and batch number, its rows, inputs, targets and predictions.

Why apart from the step cycle: a PyTorch loop never says "epoch 2, batch 5". The
numbers are read off the DataLoader iterators (a new or restarted iterator is a new
epoch), or, without a loader, off the rows (a batch that repeats a row of the current
epoch starts the next one). :class:`LoaderBatches` follows the loader batches of a
``trace_torch`` block, :class:`EpochCounter` counts one run's epochs, and :func:`place`
fills a freshly opened step.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

import numpy as np
import torch

from .data import as_rows
from .graph import Graph, settle_divide_by
from .sources import LoaderBatch

if TYPE_CHECKING:  # pragma: no cover
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

    def fresh(self) -> bool:
        """True when a DataLoader batch arrived that no step has used yet."""
        b = self.latest
        return b is not None and self._used != (b.serial, b.number)

    def latest_size(self) -> int | None:
        """Rows in the latest batch's inputs (None if it has no tensor inputs)."""
        b = self.latest
        if b is not None and isinstance(b.data, (list, tuple)) and b.data and isinstance(b.data[0], torch.Tensor):
            return int(b.data[0].shape[0])
        return None

    def for_inputs(self, x: torch.Tensor | None) -> LoaderBatch | None:
        """The loader batch whose inputs the model saw, or None.

        When the graph does not show the model's input (an unsupported layer), the
        latest batch counts if no step has used it yet."""
        if self.latest is None:
            return None
        batch = self.latest
        data = batch.data
        if not isinstance(data, (list, tuple)) or not data or not isinstance(data[0], torch.Tensor):
            return None
        key = (batch.serial, batch.number)
        if x is None:
            fresh = self._used != key
            self._used = key
            return batch if fresh else None
        self._used = key
        bx = data[0]
        if bx.shape[0] != x.shape[0]:
            return None
        same = bx.data_ptr() == x.data_ptr() or (bx.numel() == x.numel() and torch.equal(bx.reshape(x.shape), x))
        return batch if same else None


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


def place(run: TorchRun, st: Step, g: Graph, loader: LoaderBatches, take_slices: Callable[[], Any]) -> None:
    """Epoch, batch number and (full capture) rows, predictions and data of the step."""
    rec = run.recorder
    batch = loader.for_inputs(g.x)
    if batch is not None:
        run.clock.at_loader_batch(batch)
    if st.record and rec.full:
        _batch_info(run, st, g, batch, take_slices)
    if batch is None and not rec.full and g.x is not None:
        rows = run.rows.match(g.x, take_slices)     # summary capture: rows only to tell the epochs apart
        if rows is not None:
            st.rows = rows
            run.clock.at_rows(rows, rec.n_rows, revisits=True)
    if batch is None and st.rows is None:
        run.clock.at_unplaced()
    st.epoch, st.batch = run.clock.position()


def _batch_info(run: TorchRun, st: Step, g: Graph, batch: LoaderBatch | None, take_slices) -> None:
    """Rows, inputs, targets and predictions of the batch (full capture only)."""
    x = g.x
    if g.pred is not None:
        with torch.no_grad():
            pred = g.pred()
        st.pred = as_rows(pred).copy()
    st.batch_size = int(x.shape[0]) if x is not None else (st.pred.shape[0] if st.pred is not None else None)
    if st.batch_size is None and batch is not None:
        st.batch_size = int(batch.data[0].shape[0])
    if run.loss is None and run.loss_raw is not None and st.pred is not None:
        run.loss = settle_divide_by(run.loss_raw, st.batch_size, st.pred.shape[1])
    target = _target(run, st, g, batch)
    st.rows = run.rows.locate(x, target, batch, take_slices)
    if batch is None and st.rows is not None:
        run.clock.at_rows(st.rows, run.recorder.n_rows, revisits=run.rows.source.revisits)


def _target(run: TorchRun, st: Step, g: Graph, batch: LoaderBatch | None) -> torch.Tensor | None:
    """The batch's targets: the loss's own, rebuilt from its saved difference, or the loader's."""
    target = g.target
    if target is None and g.diff is not None and st.pred is not None and batch is None:
        d, side = g.diff
        pred = torch.from_numpy(st.pred).reshape(d.shape).to(d.dtype)
        target = pred - d if side == 0 else d + pred     # rebuilt from (pred - y): may differ by 1 ulp
        if not run.rebuilt_note:
            run.rebuilt_note = True
            run.recorder.note("targets rebuilt from the loss's saved difference (prediction - target); "
                              "pass data=(inputs, targets) for exact values")
    if batch is not None and target is None and len(batch.data) > 1 and isinstance(batch.data[1], torch.Tensor):
        target = batch.data[1]
    return target
