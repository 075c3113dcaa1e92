"""Row sources: where a training loop's batch rows are in its data, one small class per way.

Why several: a PyTorch loop may draw batches from a ``DataLoader`` over a
``TensorDataset`` (the sampler's indices are the rows), over another map-style dataset
(the indices are rows, the data table is filled from the batches), over an iterable
dataset (each batch's rows are new rows, as seen), from its own generator cutting
``features[idx]`` (rows found by content), from views ``x[a:b]`` of a tensor (rows
read off the view), or train on the whole data at every step (every row). Each source
answers the same question, :meth:`RowSource.locate`, and stores the data table once
(issue 16: a full-batch loop's rows are not appended at every step).
:class:`RowFinder` picks the run's source: the loader's way at its first batch, else
the way the step program's batch tensors showed (:mod:`hooks.torch.layout`).
"""
from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import torch

from tracer.recorder import Recorder

from ..rows import RowMatcher
from .data import as_rows, dataset_tensors, target_rows
from .layout import Layout, view_rows

__all__ = ["LoaderBatch", "RowSource", "LoaderRows", "IndexedRows", "SeenRows", "MatchedRows", "SliceRows",
           "FullRows", "RowFinder"]


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
    from_loader = False       # rows come from the DataLoader
    revisits = True           # a later epoch's rows are the same positions again
    collected_note = ""

    def locate(self, x: Any, batch: LoaderBatch | None) -> np.ndarray | None:
        """The rows of a step: ``x`` is the step's batch tensor (non-loader sources) or
        ``batch`` the DataLoader batch (loader sources). None when this source cannot say."""
        raise NotImplementedError

    def collected(self) -> tuple[np.ndarray, np.ndarray] | None:
        """The data table this source built from the batches, if it builds one."""
        return None


class LoaderRows(RowSource):
    """A ``TensorDataset`` (or a ``Subset`` of one) behind a DataLoader: the sampler's
    indices are the rows (through the subset's positions)."""

    kind = "dataset"
    from_loader = True

    def __init__(self, positions: np.ndarray | None) -> None:
        self.positions = positions

    def locate(self, x: Any, batch: LoaderBatch | None) -> np.ndarray | None:
        """The sampler's indices, mapped through the subset's positions."""
        if batch is None or batch.indices is None:
            return None
        rows = np.asarray(batch.indices, dtype=np.int64)
        return rows if self.positions is None else self.positions[rows]


def _batch_xy(batch: LoaderBatch) -> tuple[np.ndarray | None, np.ndarray | None]:
    data = batch.data
    if not isinstance(data, (list, tuple)) or not data or not isinstance(data[0], torch.Tensor):
        return None, None
    n = data[0].shape[0] if data[0].dim() else None
    ys = []
    for t in data[1:]:               # (x, y, more targets...): side by side, as the layout numbers them
        if not isinstance(t, torch.Tensor) or not t.dim() or t.shape[0] != n:
            break
        ys.append(t)
    return as_rows(data[0]), target_rows(ys) if ys else None


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

    def locate(self, x: Any, batch: LoaderBatch | None) -> np.ndarray | None:
        """The sampler's indices; the batch's values are stored at them."""
        if batch is None or batch.indices is None:
            return None
        bx, by = _batch_xy(batch)
        if bx is None:
            return None
        rows = np.asarray(batch.indices, dtype=np.int64)
        self.put(rows, bx, by)
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


class SeenRows(RowSource):
    """An iterable dataset: the data table is the batches' rows as they came."""

    kind = "seen"
    from_loader = True
    revisits = False
    collected_note = "no dataset found: the data table holds each batch's rows as they were seen"

    def __init__(self) -> None:
        self.x: list[np.ndarray] = []
        self.y: list[np.ndarray] = []
        self.n = 0

    def locate(self, x: Any, batch: LoaderBatch | None) -> np.ndarray | None:
        """New positions for the batch's rows, which are kept."""
        if batch is None:
            return None
        bx, by = _batch_xy(batch)
        return None if bx is None else self.add(bx, by)

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


class MatchedRows(RowSource):
    """Batches cut from a known tensor by the user's own code (S3's generator, or ``data=``):
    each batch row is found by its bytes."""

    kind = "matched"

    def __init__(self, inputs: np.ndarray) -> None:
        # inputs alone (a repeated row is its first position: epochs are told apart by repeats)
        self.matcher = RowMatcher(inputs, repeats="first")

    def locate(self, x: Any, batch: LoaderBatch | None) -> np.ndarray | None:
        """The positions of every row of ``x``, or None if one is not in the data."""
        return None if x is None else self.matcher.match(as_rows(x))


class SliceRows(RowSource):
    """Batches that are views ``data[a:b]`` (or ``data[a:b, c:d]``) of one tensor: the rows are ``a..b``."""

    kind = "sliced"

    def __init__(self, root: torch.Tensor) -> None:
        self.root = root

    def locate(self, x: Any, batch: LoaderBatch | None) -> np.ndarray | None:
        """``a..b`` when ``x`` is such a view of the data, else None."""
        if x is None or x._base is None or x._base.data_ptr() != self.root.data_ptr():
            return None
        found = view_rows(x, self.root)
        return None if found is None else found[0]


class FullRows(RowSource):
    """A full-batch loop: every step trains on all rows, stored once."""

    kind = "full"

    def __init__(self, key: torch.Tensor | None) -> None:
        self.key = key
        self.rows = None if key is None else np.arange(key.shape[0], dtype=np.int64)

    def locate(self, x: Any, batch: LoaderBatch | None) -> np.ndarray | None:
        """Every row, when the step's batch is the data seen at the build step (same memory or
        same values); None when it changed."""
        if self.rows is None:
            return None
        if x is None or x is self.key:
            return self.rows
        k = self.key
        if tuple(x.shape) != tuple(k.shape):
            return None
        if x.data_ptr() == k.data_ptr() and x.stride() == k.stride():
            return self.rows
        return self.rows if torch.equal(x, k) else None


class RowFinder:
    """Picks a run's :class:`RowSource` and asks it for each step's rows (see the module doc)."""

    def __init__(self, recorder: Recorder, data_arg: tuple | None) -> None:
        self.source: RowSource | None = None
        self._rec = recorder
        self._data_arg = data_arg

    @property
    def kind(self) -> str | None:
        """The source's kind for ``meta["torch"]["data"]`` (None before the first batch)."""
        return None if self.source is None else self.source.kind

    def from_loader(self, batch: LoaderBatch) -> np.ndarray | None:
        """The rows of a DataLoader batch (the loader's source is chosen at its first batch)."""
        if self.source is None:
            self.source = self._dataset_source(batch.iterator)
        if not self.source.from_loader:
            return None
        return self.source.locate(None, batch)

    def fills_data(self) -> bool:
        """Whether every loader batch must be seen: the source is not chosen yet, or it fills
        the data table from the batches (a step that records no rows still brings its rows)."""
        return self.source is None or bool(self.source.collected_note)

    def from_layout(self, layout: Layout) -> None:
        """A loop without a DataLoader: the source the build step's batch tensors showed,
        and the data table laid out by the program (set once)."""
        if self.source is not None or layout is None or not layout.inputs or layout.kind == "loader":
            return
        key = layout.key
        if self._data_arg is not None:
            inputs, targets = (as_rows(torch.as_tensor(a)) for a in self._data_arg)
            self._set_data(lambda: (inputs, targets))
            self._note("batch rows recovered by matching against the data= argument")
            self.source = MatchedRows(inputs)
            return
        self._set_data(lambda: _tables(layout))
        if layout.kind == "matched" and key is not None:
            # the key's own columns (a column view of ``X[idx]`` holds only some of X's)
            width = int(np.prod(key.shape, dtype=np.int64))
            self.source = MatchedRows(as_rows(key.root)[:, key.first:key.first + width])
            self._note("batch rows recovered by matching against the tensor the batches are cut from")
        elif layout.kind == "slice" and key is not None:
            self.source = SliceRows(key.root)
            self._note("batch rows read off the views of the data tensor")
        else:
            self.source = FullRows(None if key is None else key.tensor)
            self._note("full-batch training: every step uses all rows, stored once")

    def locate(self, x: torch.Tensor | None) -> np.ndarray | None:
        """The rows of a step without a DataLoader batch, from its batch tensor ``x``."""
        if self.source is None or self.source.from_loader:
            return None
        return self.source.locate(x, None)

    def apply_collected(self) -> None:
        """Give the recorder the data table a source built from the batches, with a note."""
        arrays = None if self.source is None else self.source.collected()
        if arrays is not None:
            self._rec.set_data(*arrays)
            self._note(self.source.collected_note)

    def _set_data(self, tables) -> None:
        """Declare the data table (``tables()`` gives it) - only when values are captured:
        a summary trace keeps no rows."""
        if self._rec.full:
            self._rec.set_data(*tables())

    def _note(self, text: str) -> None:
        self._rec.meta.setdefault("notes", []).append(text)

    def _dataset_source(self, iterator: Any) -> RowSource:
        found = dataset_tensors(iterator._dataset)
        if found is None:
            try:
                n = len(iterator._dataset)
            except TypeError:
                n = None
            return SeenRows() if n is None or iterator._dataset_kind != 0 else IndexedRows(n)
        inputs, targets, positions = found
        self._set_data(lambda: (as_rows(inputs), target_rows(targets)))
        self._note("batch rows from the DataLoader's sampler")
        return LoaderRows(positions)


def _tables(layout: Layout) -> tuple[np.ndarray, np.ndarray]:
    """The data table a program's layout describes: its roots' rows side by side."""
    tables = {k: np.concatenate([as_rows(r) for r in roots], axis=1) for k, roots in layout.tables.items()}
    n = next(iter(tables.values())).shape[0]
    return tables.get("inputs", np.full((n, 1), np.nan)), tables.get("targets", np.full((n, 1), np.nan))
