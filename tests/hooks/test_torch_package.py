"""hooks.torch as a package: the facade, no shadowing of PyTorch, the row sources."""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import hooks.torch  # noqa: E402
from hooks.torch import TorchTracer, trace_torch  # noqa: E402
from hooks.torch import graph, sources  # noqa: E402


def test_the_facade_exports_the_tracer_and_pytorch_is_not_shadowed():
    assert hooks.torch.__all__ == ["trace_torch", "TorchTracer"]
    assert isinstance(trace_torch(), TorchTracer)
    # ``import torch`` inside the package is absolute: it is PyTorch, not hooks.torch
    assert graph.torch is torch and sources.torch is torch
    assert hasattr(graph.torch, "Tensor") and graph.torch.__name__ == "torch"


def _batch(indices, *data):
    return sources.LoaderBatch(None, indices, list(data), 1, 1)


def test_loader_rows_map_the_sampler_indices_through_a_subset():
    assert sources.LoaderRows(None).locate(None, _batch([3, 1])).tolist() == [3, 1]
    src = sources.LoaderRows(np.array([10, 20, 30, 40]))
    assert src.locate(None, _batch([3, 1])).tolist() == [40, 20]
    assert src.locate(None, _batch(None)) is None
    assert src.collected() is None and src.kind == "dataset" and src.from_loader


def test_indexed_rows_fill_the_data_table_from_the_batches():
    src = sources.IndexedRows(4)
    rows = src.locate(None, _batch([2, 0], torch.tensor([[1.0], [2.0]]), torch.tensor([[5.0], [6.0]])))
    assert rows.tolist() == [2, 0]
    x, y = src.collected()
    assert x[[2, 0], 0].tolist() == [1.0, 2.0] and y[[2, 0], 0].tolist() == [5.0, 6.0]
    assert np.isnan(x[1, 0]) and np.isnan(x[3, 0])
    assert src.locate(None, _batch(None, torch.ones(1, 1))) is None


def test_matched_rows_find_rows_by_content_or_say_none():
    data = np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]], dtype=np.float32)
    src = sources.MatchedRows(data)
    assert src.locate(torch.tensor([[5.0, 6.0], [1.0, 2.0]]), None).tolist() == [2, 0]
    assert src.locate(torch.tensor([[9.0, 9.0]]), None) is None
    assert src.revisits and not src.from_loader


def test_seen_rows_number_new_rows_in_order_of_arrival():
    src = sources.SeenRows()
    assert src.locate(None, _batch(None, torch.ones(2, 1))).tolist() == [0, 1]
    assert src.locate(None, _batch(None, torch.zeros(1, 1), torch.ones(1, 1))).tolist() == [2]
    x, y = src.collected()
    assert x[:, 0].tolist() == [1.0, 1.0, 0.0] and np.isnan(y[0, 0]) and y[2, 0] == 1.0
    assert not src.revisits


def test_slice_rows_read_the_rows_off_a_view():
    data = torch.arange(12.0).reshape(6, 2)
    src = sources.SliceRows(data)
    assert src.locate(data[2:5], None).tolist() == [2, 3, 4]
    assert src.locate(data[2:5].clone(), None) is None           # a copy is not a view of the data


def test_full_rows_are_every_row_while_the_data_stays_the_same():
    x = torch.randn(5, 3)
    src = sources.FullRows(x)
    assert src.locate(x, None).tolist() == list(range(5))
    assert src.locate(x.clone(), None).tolist() == list(range(5))   # equal values
    assert src.locate(torch.randn(5, 3), None) is None              # other data
