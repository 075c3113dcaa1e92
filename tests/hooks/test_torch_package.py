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


def test_loader_rows_map_the_sampler_indices_through_a_subset():
    assert sources.LoaderRows(None).locate(None, None, [3, 1]).tolist() == [3, 1]
    src = sources.LoaderRows(np.array([10, 20, 30, 40]))
    assert src.locate(None, None, [3, 1]).tolist() == [40, 20]
    assert src.locate(None, None, None) is None
    assert src.collected() is None and src.kind == "dataset" and src.from_loader


def test_indexed_rows_fill_the_data_table_from_the_batches():
    src = sources.IndexedRows(4)
    rows = src.locate(torch.tensor([[1.0], [2.0]]), torch.tensor([[5.0], [6.0]]), [2, 0])
    assert rows.tolist() == [2, 0]
    x, y = src.collected()
    assert x[[2, 0], 0].tolist() == [1.0, 2.0] and y[[2, 0], 0].tolist() == [5.0, 6.0]
    assert np.isnan(x[1, 0]) and np.isnan(x[3, 0])
    assert src.locate(None, None, [1]) is None


def test_matched_rows_find_rows_by_content_or_say_none():
    data = np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]], dtype=np.float32)
    src = sources.MatchedRows(data)
    assert src.locate(torch.tensor([[5.0, 6.0], [1.0, 2.0]]), None, None).tolist() == [2, 0]
    assert src.locate(torch.tensor([[9.0, 9.0]]), None, None) is None
    assert src.revisits and not src.from_loader


def test_seen_rows_number_new_rows_in_order_of_arrival():
    src = sources.SeenRows()
    assert src.locate(torch.ones(2, 1), None, None).tolist() == [0, 1]
    assert src.locate(torch.zeros(1, 1), torch.ones(1, 1), None).tolist() == [2]
    x, y = src.collected()
    assert x[:, 0].tolist() == [1.0, 1.0, 0.0] and np.isnan(y[0, 0]) and y[2, 0] == 1.0
    assert not src.revisits


def test_the_finder_falls_back_from_matching_to_rows_as_seen():
    from tracer.recorder import Recorder
    rec = Recorder()
    data = (torch.tensor([[1.0], [2.0]]), torch.tensor([[3.0], [4.0]]))
    finder = sources.RowFinder(rec, data)
    rows = finder.locate(torch.tensor([[2.0]]), None, None, lambda: None)
    assert rows.tolist() == [1] and finder.kind == "matched"
    rows = finder.locate(torch.tensor([[7.0]]), None, None, lambda: None)
    assert rows.tolist() == [0] and finder.kind == "seen"
    assert any("rows recorded as seen" in n for n in rec.trace().meta["notes"])
