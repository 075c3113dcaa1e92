"""The step's tensors that nobody trains: the batch, constants, frozen tensors, plain numbers.

Why it matters: the checker re-reads every step's batch from the trace's data table,
so a tensor that holds the batch (one row per example: its first dimension is the
batch size) becomes a program *input* - a column range of that table - while a small
tensor that is the same at every step becomes a *const* stored in the program, a
0-d tensor a plain number, and a plain tensor used as a layer's weight or bias (S4's
``b1``, which a diagnosis names as "never updated") or a large constant a *frozen*
parameter recorded with the steps. An ``nn.Parameter`` with ``requires_grad=False`` is
a layer frozen on purpose: a const (up to the program's limit), never named as a bug.

Where a batch tensor's rows are (so that later steps are found without watching the
forward pass again, :mod:`hooks.torch.sources`):

- ``loader``: it is (a view of, or equal to) a tensor of the DataLoader's batch; the
  data table is the dataset and the rows are the sampler's indices;
- ``matched``: it was cut from a bigger tensor with ``source[idx]`` (S3's generator):
  rows are found by content;
- ``slice``: it is a view ``source[a:b]`` (the "torch.nn really" tutorial): rows are
  ``a..b``, read off the view's storage offset;
- ``full``: it is the whole data (a full-batch loop): every row, stored once.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from tracer.program.program import MAX_CONST_ELEMENTS

from .emit import Unsupported
from .graph import Walk, find_saved

if TYPE_CHECKING:
    from collections.abc import Iterable

__all__ = ["DataInput", "Layout", "OffBatch", "CONST_ELEMENTS", "batch_source", "classify"]

_MATMULS = {"matmul", "mm", "bmm", "mv", "__matmul__", "__rmatmul__", "linear", "addmm", "dot"}
CONST_ELEMENTS = 10_000
"""Untracked tensors up to this many elements are stored in the program; bigger ones are recorded."""


class OffBatch(Unsupported):
    """A batch tensor that is not (a view of) the DataLoader's batch: the builder tries again
    with the capture's derived records (the batch's preprocessing inside the step)."""


@dataclass
class DataInput:
    """One batch tensor of the build step: its program input and where its rows come from."""

    tensor: torch.Tensor
    name: str = ""
    source: str = "inputs"            # which data table: "inputs" or "targets"
    columns: list = field(default_factory=list)
    shape: list = field(default_factory=list)
    dtype: str = "float"
    root: torch.Tensor | None = None  # the tensor the rows index (not for loader batches)
    rows: np.ndarray | None = None    # its rows at the build step
    loc: tuple | None = None          # where the graph saved it (hooks.torch.graph.Locator)
    first: int = 0                    # its first column in its root's rows (a column view)

    def program_input(self) -> dict:
        return {"name": self.name, "source": self.source, "columns": list(self.columns),
                "shape": list(self.shape), "dtype": self.dtype}


@dataclass
class Layout:
    """How the build step's untracked tensors enter the program (see the module docstring)."""

    batch_size: int | None = None
    kind: str | None = None                      # loader / matched / slice / full, None: no batch
    inputs: list[DataInput] = field(default_factory=list)
    consts: list[tuple] = field(default_factory=list)      # (tensor, value array, dtype)
    frozen: list[tuple] = field(default_factory=list)      # (tensor, is a layer's weight/bias)
    literals: dict = field(default_factory=dict)           # id(tensor) -> number
    tables: dict = field(default_factory=dict)             # "inputs"/"targets" -> [root tensors] (not loader)

    key: DataInput | None = None                          # the batch tensor found again at each step

    def choose_key(self) -> None:
        """The batch tensor to find at each step: one the graph saved, inputs before targets."""
        located = [d for d in self.inputs if d.loc is not None]
        located.sort(key=lambda d: d.source != "inputs")
        self.key = located[0] if located else None


def batch_source(t: torch.Tensor, batch_tensors: list[torch.Tensor]) -> int | None:
    """Which tensor of a DataLoader batch ``t`` holds (itself, a view, equal values, or some of
    its columns), or None."""
    found = batch_columns(t, batch_tensors)
    return None if found is None else found[0]


def batch_columns(t: torch.Tensor, batch_tensors: list[torch.Tensor]) -> tuple[int, int] | None:
    """``(j, first column)``: ``t`` is batch tensor ``j`` (or columns of it, ``y[:, :1]``)."""
    for j, bt in enumerate(batch_tensors):
        if not isinstance(bt, torch.Tensor) or bt.dim() == 0 or t.dim() == 0 or bt.shape[0] != t.shape[0]:
            continue
        if t is bt:
            return j, 0
        try:
            if bt.numel() == t.numel() and (_same_memory(t, bt) or torch.equal(bt.reshape(t.shape).to(t.dtype), t)):
                return j, 0
            col = column_view(t, bt)
            if col is not None:
                return j, col
        except RuntimeError:
            continue
    return None


def _same_memory(t: torch.Tensor, other: torch.Tensor) -> bool:
    return t.data_ptr() == other.data_ptr() and t.numel() == other.numel() and t.is_contiguous() \
        and other.is_contiguous()


def column_view(t: torch.Tensor, base: torch.Tensor) -> int | None:
    """The first column when ``t`` is a view of some columns of every row of ``base``
    (``x[:, 2:5]``, ``y[:, 0]``), else None."""
    found = view_rows(t, base)
    if found is None or found[0].size != base.shape[0]:
        return None
    return found[1]


def view_rows(t: torch.Tensor, base: torch.Tensor) -> tuple[np.ndarray, int] | None:
    """``(rows, first column)`` when ``t`` is a view ``base[a:b, c:d]`` (whole rows or a column
    range of each, ``x[a:b]``, ``x[:, 2:5]``, ``y[a:b, 0]``), else None."""
    if t.dim() == 0 or base.dim() == 0 or not base.is_contiguous() or \
            t.untyped_storage().data_ptr() != base.untyped_storage().data_ptr():
        return None
    n, b = base.shape[0], t.shape[0]
    width = base.numel() // max(n, 1)
    per_row = t.numel() // max(b, 1)
    if width == 0 or (b > 1 and t.stride(0) != width) or (per_row > 1 and not t[0].is_contiguous()):
        return None
    offset = t.storage_offset() - base.storage_offset()
    if offset < 0:
        return None
    start, col = divmod(offset, width)
    if col + per_row > width or start + b > n:
        return None
    try:
        same = torch.equal(base.reshape(n, width)[start:start + b, col:col + per_row].reshape(t.shape), t)
    except RuntimeError:
        return None
    return (np.arange(start, start + b, dtype=np.int64), col) if same else None


def find_root(t: torch.Tensor, slices: Iterable[tuple[torch.Tensor, Any, torch.Tensor]]
              ) -> tuple[str, torch.Tensor, np.ndarray, int]:
    """``(kind, root, rows, first column)`` of a batch tensor that is not a DataLoader's (see
    the module docstring). The column is read off the tensor the view was cut from: for a
    column view of ``X[idx]`` (``X[idx].view(-1, 2, 3)[:, 1]``) that is ``X[idx]``, whose
    columns are the root's."""
    base = t._base if t._base is not None else None
    for src, idx, out in reversed(slices):
        if t is out or (base is not None and base is out):
            rows = _index_rows(idx, src.shape[0])
            if rows is not None and rows.size == t.shape[0]:
                found = None if t is out else view_rows(t, out)
                return "matched", src, rows, 0 if found is None else found[1]
    if base is not None and base.dim() >= 1:
        found = view_rows(t, base)
        if found is not None:
            rows = found[0]
            return ("full" if rows.size == base.shape[0] else "slice"), base, rows, found[1]
    return "full", t, np.arange(t.shape[0], dtype=np.int64), 0


def _index_rows(idx, n: int) -> np.ndarray | None:
    if isinstance(idx, torch.Tensor):
        if idx.dtype == torch.bool:
            idx = idx.nonzero().reshape(-1)
        idx = idx.detach().cpu().numpy()
    arr = np.asarray(list(idx) if isinstance(idx, range) else idx)
    if arr.ndim != 1 or arr.dtype.kind not in "iu":
        return None
    return np.where(arr < 0, arr + n, arr).astype(np.int64)


def place_rows(layout: Layout, leaves: list[DataInput],
               slices: Iterable[tuple[torch.Tensor, Any, torch.Tensor]]) -> None:
    """Give every batch tensor of a loop without a DataLoader its root and rows, and lay the
    roots out as the data table's columns (raises Unsupported when the rows disagree)."""
    kinds = set()
    rows0 = None
    for d in leaves:
        kind, root, rows, d.first = find_root(d.tensor, slices)
        d.root, d.rows = root, rows
        kinds.add(kind)
        if rows0 is None:
            rows0 = rows
        elif not np.array_equal(rows0, rows):
            raise OffBatch("batch tensors that hold different rows")
    roots_n = {int(d.root.shape[0]) for d in leaves}
    if len(roots_n) > 1:
        fresh = next((d for d in leaves if d.root is d.tensor and int(d.root.shape[0]) < max(roots_n)), None)
        if fresh is not None:
            raise OffBatch(f"a batch tensor of shape {tuple(fresh.tensor.shape)} made by operations that need "
                              "no gradient (preprocessing, or a frozen part of the model) from data the step "
                              "cannot place")
        raise Unsupported("batch tensors cut from data of different lengths")
    layout.kind = "matched" if "matched" in kinds else "slice" if "slice" in kinds else "full"
    for d in leaves:
        table = layout.tables.setdefault(d.source, [])
        start = 0
        for r in table:
            if r is d.root:
                break
            start += r.numel() // max(r.shape[0], 1)
        else:
            table.append(d.root)
        start += d.first
        d.columns = [start, start + int(np.prod(d.shape, dtype=np.int64))]


def loader_columns(d: DataInput, j: int, col: int, batch_tensors: list[torch.Tensor]) -> None:
    """A batch tensor that is (columns ``col..`` of) the loader batch's tensor ``j``: the
    dataset's columns. Tensors after the first are the targets table side by side
    (``(x, labels, soft_labels)``, ``(x, y, weight)``: :func:`hooks.torch.data.target_rows`)."""
    if j > 1:
        before, n = batch_tensors[1:j], d.tensor.shape[0]
        if not all(isinstance(t, torch.Tensor) and t.dim() and t.shape[0] == n for t in batch_tensors[:j + 1]):
            raise Unsupported("a DataLoader batch whose extra items are not tensors of the batch's rows")
        col += sum(t.numel() // max(t.shape[0], 1) for t in before)
    d.source = "inputs" if j == 0 else "targets"
    d.columns = [col, col + int(np.prod(d.shape, dtype=np.int64))]


# ----------------------------------------------------- classifying the leaves
def _roles(cone: list, batch_size: int | None) -> set[int]:
    """Untracked tensors used as a layer's weight or bias: a ``linear``'s weight/bias, the
    weight operand of a matmul (``h @ W``, ``addmm(b, h, W)``), or a term added to a
    matmul's result - never the batch itself (first dimension the batch size)."""
    made_by_mm = set()
    layer = set()
    for rec in cone:
        ts = list(rec.tensors())
        if rec.name == "linear":
            layer.update(id(t) for t in ts[1:] if not t.requires_grad)
        elif rec.name == "addmm" and len(ts) == 3:
            layer.update(id(t) for t in (ts[0], ts[2]) if not t.requires_grad)
        elif rec.name in _MATMULS and len(ts) >= 2 and ts[0].requires_grad and not ts[1].requires_grad:
            layer.add(id(ts[1]))
        elif rec.name in ("add", "__add__", "__radd__", "add_") and len(ts) == 2:
            for a, b in ((ts[0], ts[1]), (ts[1], ts[0])):
                if id(a) in made_by_mm and not b.requires_grad:
                    layer.add(id(b))
        if rec.name in _MATMULS:
            made_by_mm.update(id(t) for t in rec.outs())
    batch = {id(t) for rec in cone for t in rec.tensors()
             if batch_size is not None and t.dim() >= 1 and t.shape[0] == batch_size and t.dim() >= 2}
    return layer - batch


def _batch_size(cone, untracked, target, batch) -> int | None:
    if batch is not None:
        for t in untracked:
            if t.dim() >= 1 and batch_source(t, batch) is not None:
                return int(batch[0].shape[0]) if isinstance(batch[0], torch.Tensor) else int(t.shape[0])
    if target is not None and target.dim() >= 1:
        return int(target.shape[0])
    ids = {id(t) for t in untracked}
    for rec in cone:
        if rec.name in _MATMULS:
            ts = list(rec.tensors())
            if ts and id(ts[0]) in ids and ts[0].dim() >= 2:
                return int(ts[0].shape[0])
    return None


def classify(cone: list, untracked: list[torch.Tensor], target: torch.Tensor | None, w: Walk,
             batch: list | None, slices: Iterable[tuple[torch.Tensor, Any, torch.Tensor]]) -> Layout:
    """The :class:`Layout` of the build step's untracked tensors (see the module docstring);
    ``batch`` is the fresh DataLoader batch's tensors, ``slices`` the watched ``x[idx]`` calls."""
    layout = Layout(batch_size=_batch_size(cone, untracked, target, batch))
    b = layout.batch_size
    layer = _roles(cone, b)
    rows = []
    for t in untracked:
        frozen_on_purpose = isinstance(t, torch.nn.Parameter)      # requires_grad=False: a frozen layer
        if t.dim() == 0:
            layout.literals[id(t)] = _number(t)
        elif id(t) in layer and not frozen_on_purpose:
            layout.frozen.append((t, True))    # a plain tensor as a layer's weight/bias: S4's b1, named
        elif b is not None and t.shape[0] == b and not frozen_on_purpose:
            rows.append(DataInput(tensor=t, source="targets" if t is target else "inputs",
                                  shape=list(t.shape[1:]), dtype="float" if t.is_floating_point() else "int"))
        elif t.numel() <= (MAX_CONST_ELEMENTS if frozen_on_purpose else CONST_ELEMENTS):
            value = t.detach().cpu()
            dtype = "float" if value.is_floating_point() else "int"
            layout.consts.append((t, value.double().numpy() if dtype == "float" else value.long().numpy(), dtype))
        else:
            layout.frozen.append((t, False))
    if rows and batch is not None:
        layout.kind = "loader"
        for d in rows:
            found = batch_columns(d.tensor, batch)
            if found is None:
                raise OffBatch(f"a batch tensor of shape {tuple(d.tensor.shape)} computed from the "
                               "DataLoader's batch outside the watched operations")
            loader_columns(d, *found, batch)
    elif rows:
        place_rows(layout, rows, slices)
    for d in rows:
        d.loc = find_saved(w, d.tensor)
    layout.inputs = rows
    layout.choose_key()
    return layout


def _number(t: torch.Tensor) -> float:
    v = t.item()
    return float(v) if not isinstance(v, bool) else (1.0 if v else 0.0)
