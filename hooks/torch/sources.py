"""Row sources: where a training loop's batch rows are in its data, one small class per way.

Why several: a PyTorch loop may draw batches from a ``DataLoader`` over a
``TensorDataset`` (the sampler's indices are the rows), over another map-style dataset
(the indices are rows, the data table is filled from the batches), from its own
generator slicing a tensor (rows are found by matching bytes), or from nowhere steptrace
can see (each batch's rows are new rows, as seen). Each source answers the same
question, :meth:`RowSource.locate`, and :class:`RowFinder` picks the run's source at
its first batch, the way the data shows itself.
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple

import numpy as np
import torch

from tracer.errors import TraceInputError
from tracer.recorder import Recorder

from ..rows import RowMatcher
from .data import as_rows, dataset_tensors


class LoaderBatch(NamedTuple):
    """One batch a DataLoader iterator handed out, as the loader patch reported it."""

    iterator: Any
    indices: Any              # the sampler's indices, or None (not a map-style dataset)
    data: Any                 # what the iterator returned (usually [inputs, targets])
    serial: int               # which iterator (numbered from 1 in the block)
    number: int               # batches this iterator has handed out, this one included


class RowSource:
    """Where the rows of a batch are: :meth:`locate` gives 0-based positions, or None."""

    kind = "?"                # meta["torch"]["data"]
    from_loader = False       # rows come from the DataLoader's indices
    revisits = True           # a later epoch's rows are the same positions again

    def locate(self, x: torch.Tensor | None, target: torch.Tensor | None,
               indices: Any | None) -> np.ndarray | None:
        """The rows of the batch whose inputs are ``x`` (None when this source cannot say)."""
        raise NotImplementedError

    def collected(self) -> tuple[np.ndarray, np.ndarray] | None:
        """The data table this source built from the batches, if it builds one."""
        return None

    collected_note = ""


class LoaderRows(RowSource):
    """A ``TensorDataset`` (or a ``Subset`` of one) behind a DataLoader: the sampler's
    indices are the rows (through the subset's positions)."""

    kind = "dataset"
    from_loader = True

    def __init__(self, positions: np.ndarray | None) -> None:
        self.positions = positions

    def locate(self, x: torch.Tensor | None, target: torch.Tensor | None,
               indices: Any | None) -> np.ndarray | None:
        """The sampler's indices, mapped through the subset's positions."""
        if indices is None:
            return None
        rows = np.asarray(indices, dtype=np.int64)
        return rows if self.positions is None else self.positions[rows]


class IndexedRows(RowSource):
    """A map-style dataset that is not a TensorDataset: the indices are the rows, and the
    data table is filled from the batches at those positions (rows never drawn stay NaN)."""

    kind = "indexed"
    from_loader = True
    collected_note = ("the dataset is not a TensorDataset: its rows were filled from the batches "
                      "the loader drew")

    def __init__(self, n: int) -> None:
        self.n = int(n)
        self.x = None
        self.y = None

    def locate(self, x: torch.Tensor | None, target: torch.Tensor | None,
               indices: Any | None) -> np.ndarray | None:
        """The sampler's indices; the batch's values are stored at them."""
        if indices is None or x is None:
            return None
        rows = np.asarray(indices, dtype=np.int64)
        self.put(rows, as_rows(x), None if target is None else as_rows(target))
        return rows

    def put(self, rows: np.ndarray, x: np.ndarray, y: np.ndarray | None) -> None:
        """Store a batch's inputs (and targets) at dataset positions ``rows``."""
        if self.x is None:
            dtype = x.dtype if np.issubdtype(x.dtype, np.floating) else np.float64
            self.x = np.full((self.n, x.shape[1]), np.nan, dtype=dtype)
            self.y = np.full((self.n, 1 if y is None else y.shape[1]), np.nan)
        self.x[rows] = x
        if y is not None and y.shape[1] == self.y.shape[1]:
            self.y[rows] = y

    def collected(self) -> tuple[np.ndarray, np.ndarray] | None:
        """``(inputs, targets)`` or None if no batch was stored."""
        return None if self.x is None else (self.x, self.y)


class MatchedRows(RowSource):
    """Batches sliced from known tensors by the user's own code (S3's generator, or
    ``data=``): each batch row is found by its bytes."""

    kind = "matched"

    def __init__(self, inputs: np.ndarray) -> None:
        # inputs alone (a loop's targets may be rebuilt or absent); a repeated row is its
        # first position, since epochs are told apart by rows that repeat
        self.matcher = RowMatcher(inputs, repeats="first")

    def locate(self, x: torch.Tensor | None, target: torch.Tensor | None,
               indices: Any | None) -> np.ndarray | None:
        """The positions of every row of ``x``, or None if one is not in the data."""
        if x is None:
            return None
        return self.matcher.match(as_rows(x))


class SeenRows(RowSource):
    """No dataset steptrace can see: the data table is the batches' rows as they came."""

    kind = "seen"
    revisits = False
    collected_note = "no dataset found: the data table holds each batch's rows as they were seen"

    def __init__(self) -> None:
        self.x = []
        self.y = []
        self.n = 0

    def locate(self, x: torch.Tensor | None, target: torch.Tensor | None,
               indices: Any | None) -> np.ndarray | None:
        """New positions for the batch's rows, which are kept."""
        if x is None:
            return None
        return self.add(as_rows(x), None if target is None else as_rows(target))

    def add(self, x: np.ndarray, y: np.ndarray | None) -> np.ndarray:
        """Append a batch's rows; returns their positions."""
        rows = np.arange(self.n, self.n + x.shape[0], dtype=np.int64)
        self.x.append(np.array(x, copy=True))
        self.y.append(np.full((x.shape[0], 1), np.nan) if y is None else np.array(y, copy=True))
        self.n += x.shape[0]
        return rows

    def collected(self) -> tuple[np.ndarray, np.ndarray] | None:
        """All rows seen so far as ``(inputs, targets)``."""
        if not self.x:
            return None
        width = max(a.shape[1] for a in self.y)
        ys = [a if a.shape[1] == width else np.full((a.shape[0], width), np.nan) for a in self.y]
        return np.concatenate(self.x), np.concatenate(ys)


class RowFinder:
    """Picks a run's :class:`RowSource` from its first batches and asks it for each batch's rows.

    The order of preference: the DataLoader's indices, matching against known tensors
    (``data=`` or the tensor the first forward pass sliced), the rows as seen. A run
    whose matching fails part-way goes on with the rows as seen.
    """

    def __init__(self, recorder: Recorder, data_arg: tuple | None) -> None:
        self.source: RowSource | None = None
        self._rec = recorder
        self._data_arg = data_arg

    @property
    def kind(self) -> str | None:
        """The source's kind for ``meta["torch"]["data"]`` (None before the first batch)."""
        return None if self.source is None else self.source.kind

    def locate(self, x: torch.Tensor | None, target: torch.Tensor | None, batch: LoaderBatch | None,
               take_slices: Callable[[], Any]) -> np.ndarray | None:
        """The rows of a recorded step's batch (full capture)."""
        rows = None
        src = self.source
        if batch is not None and batch.indices is not None and (src is None or src.from_loader):
            if src is None:
                src = self.source = self._dataset_source(batch.iterator)
            rows = src.locate(x, target, batch.indices)
        if rows is None and x is not None:
            if src is None:
                src = self.source = self._matched_source(x, take_slices)
            if isinstance(src, MatchedRows):
                rows = src.locate(x, target, None)
        if rows is None and x is not None:
            if src is None or isinstance(src, MatchedRows):
                if src is not None:
                    self._rec.note("some batch rows were not found in the dataset; rows recorded as seen")
                src = self.source = SeenRows()
            if isinstance(src, SeenRows):
                rows = src.locate(x, target, None)
        return rows

    def match(self, x: torch.Tensor, take_slices: Callable[[], Any]) -> np.ndarray | None:
        """Summary capture: the rows of a batch only to tell the epochs apart (matching only)."""
        src = self.source
        if src is None:
            src = self.source = self._matched_source(x, take_slices)
        if isinstance(src, MatchedRows):
            return src.locate(x, None, None)
        return None

    def apply_collected(self) -> None:
        """Give the recorder the data table a source built from the batches, with a note."""
        arrays = None if self.source is None else self.source.collected()
        if arrays is not None:
            self._rec.set_data(*arrays)
            self._rec.meta.setdefault("notes", []).append(self.source.collected_note)

    def _dataset_source(self, iterator: Any) -> RowSource:
        found = dataset_tensors(iterator._dataset)
        if found is None:
            try:
                n = len(iterator._dataset)
            except TypeError:
                n = None
            return SeenRows() if n is None else IndexedRows(n)
        inputs, targets, positions = found
        self._rec.set_data(as_rows(inputs), as_rows(targets))
        self._rec.meta.setdefault("notes", []).append("batch rows from the DataLoader's sampler")
        return LoaderRows(positions)

    def _matched_source(self, x: torch.Tensor, take_slices: Callable[[], Any]) -> MatchedRows | None:
        data = self._data_arg
        how = "data= argument"
        slices = take_slices()
        if data is None and slices:
            data = _slice_source(slices, x)
            how = "the tensor the batches are sliced from"
        if data is None:
            return None
        inputs = as_rows(torch.as_tensor(data[0]))
        targets = as_rows(torch.as_tensor(data[1]))
        if inputs.shape[1] != as_rows(x).shape[1]:
            raise TraceInputError(f"data: inputs have {inputs.shape[1]} columns but the model's batches "
                                  f"have {as_rows(x).shape[1]}")
        self._rec.set_data(inputs, targets)
        self._rec.meta.setdefault("notes", []).append(f"batch rows recovered by matching against {how}")
        return MatchedRows(inputs)


def _slice_source(slices, x):
    """(inputs, targets) whose ``[idx]`` produced the batch, from the first forward pass."""
    for src, idx, out in slices:
        if out.data_ptr() == x.data_ptr() and out.shape[0] == x.shape[0]:
            for src2, idx2, out2 in slices:
                if idx2 is idx and src2 is not src and src2.shape[0] == src.shape[0]:
                    return src, src2
    return None
