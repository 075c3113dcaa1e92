"""Where a batch comes from: DataLoader indices, the dataset's tensors, batches as rows.

Why two ways: a ``DataLoader`` draws its indices from a sampler (``shuffle=True``
included), so wrapping the loader *iterator*'s ``_next_index`` / ``__next__`` at class
level reads them as they are drawn, without touching the sampler or the global RNG
(the shuffle stays bit-identical). A hand-written generator (S3) yields
``features[batch_indices]``: its indices live only inside the user's code, so rows are
recovered by matching each batch row's bytes against the dataset's rows
(:mod:`hooks.torch.sources` decides which way a run takes).
"""
from __future__ import annotations

from collections import deque
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch.utils.data import dataloader as _dl

from tracer.arrays import as_2d

from ..patch import Patch, set_attr

_ATTR = "_steptrace_pending"


def patch_loader(on_batch: Callable[[Any, Any, Any], None]) -> Patch:
    """Wrap the DataLoader iterator's methods at class level so each batch is reported
    with its indices: ``on_batch(iterator, indices or None, batch)`` after every
    ``__next__``. Returns the :class:`Patch` that puts the original methods back."""
    base = _dl._BaseDataLoaderIter
    orig_next_index, orig_next = base.__dict__["_next_index"], base.__dict__["__next__"]

    def _next_index(it):
        idx = orig_next_index(it)
        pending = it.__dict__.get(_ATTR)
        if pending is None:
            pending = it.__dict__[_ATTR] = deque()
        pending.append(idx)
        return idx

    def __next__(it):
        data = orig_next(it)
        pending = it.__dict__.get(_ATTR)
        idx = pending.popleft() if pending else None
        if it._dataset_kind != _dl._DatasetKind.Map:
            idx = None
        try:
            on_batch(it, idx, data)
        except Exception:  # the user's loop must never fail because of the tracer
            pass
        return data

    patch = Patch()
    patch.add(set_attr(base, "_next_index", _next_index))
    patch.add(set_attr(base, "__next__", __next__))
    return patch


def dataset_tensors(dataset: Any) -> tuple[torch.Tensor, tuple[torch.Tensor, ...], np.ndarray | None] | None:
    """``(inputs, target tensors, positions)`` for a TensorDataset (or a Subset of one), else None.

    Every tensor after the first is a target tensor: ``TensorDataset(X, labels, soft)`` or
    ``(X, y, sample_weight)`` lays them side by side as the targets table's columns
    (:func:`target_rows`). ``positions`` maps a loader index to a row of ``inputs`` (None: identity).
    """
    positions = None
    if isinstance(dataset, torch.utils.data.Subset):
        positions = np.asarray(dataset.indices, dtype=np.int64)
        dataset = dataset.dataset
    if isinstance(dataset, torch.utils.data.TensorDataset) and len(dataset.tensors) >= 2:
        return dataset.tensors[0], tuple(dataset.tensors[1:]), positions
    return None


def target_rows(tensors: Sequence[torch.Tensor]) -> np.ndarray:
    """The targets table of a batch or dataset whose tensors after the first are targets:
    their rows side by side, in order (one tensor: its rows)."""
    rows = [as_rows(t) for t in tensors]
    return rows[0] if len(rows) == 1 else np.concatenate(rows, axis=1)


def as_rows(t: torch.Tensor) -> np.ndarray:
    """A tensor as a 2-D float NumPy array of rows (class indices become a float column)."""
    a = t.detach().cpu()
    if a.dtype in (torch.bfloat16, torch.float16):
        a = a.float()
    a = as_2d("data", a.numpy())
    if not np.issubdtype(a.dtype, np.floating):
        a = a.astype(np.float64)
    return a
