"""``store=`` on the hooks: a streamed run reads back equal to the same run in memory.

Why: ``steptrace run`` streams every run through the hooks' ``store=`` option; what it
reads back must be the trace the hook would have built in memory (the torch hook's own
columns and meta included), and a block running two loops streams each to its own
directory.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from hooks.numpy import NumpyTracer
from hooks.torch import trace_torch
from tracer import Trace
from tracer.store import StreamStore


def _torch_loops(store=None, loops=1):
    torch.manual_seed(0)
    X = torch.randn(48, 3)
    y = X @ torch.tensor([[1.0], [-2.0], [0.5]]) + 0.3
    with trace_torch(store=store) as tt:
        for _ in range(loops):
            model = torch.nn.Linear(3, 1)
            opt = torch.optim.Adam(model.parameters(), lr=0.05)
            for i in range(0, 48, 8):
                opt.zero_grad()
                torch.nn.functional.mse_loss(model(X[i:i + 8]), y[i:i + 8]).backward()
                opt.step()
    return tt


def _same_tables(a: Trace, b: Trace) -> None:
    for name in ("steps", "params", "samples", "data"):
        pd.testing.assert_frame_equal(a.tables()[name].reset_index(drop=True),
                                      b.tables()[name].reset_index(drop=True), check_dtype=False)


def test_trace_torch_streamed_equals_in_memory(tmp_path):
    memory = _torch_loops().trace
    streamed = _torch_loops(StreamStore(tmp_path / "run", flush_every=2, flush_seconds=None)).trace
    _same_tables(memory, streamed)
    assert streamed.meta["optimizer"] == memory.meta["optimizer"]
    back = Trace.load(tmp_path / "run")             # the finished stream on disk
    assert back.n_steps == memory.n_steps == 6
    assert not any("unfinished" in n for n in back.meta.get("notes", []))


def test_a_second_loop_streams_beside_the_first(tmp_path):
    tt = _torch_loops(StreamStore(tmp_path / "run", flush_every=4, flush_seconds=None), loops=2)
    assert len(tt.traces) == 2
    assert Trace.load(tmp_path / "run").n_steps == 6 and Trace.load(tmp_path / "run.2").n_steps == 6


def test_numpy_tracer_streamed_equals_in_memory(tmp_path):
    def loop(store):
        rng = np.random.default_rng(0)
        x = rng.normal(size=(30, 2))
        y = x @ np.array([[2.0], [-1.0]]) + 0.5
        w, b = np.zeros((2, 1)), np.zeros(1)
        tr = NumpyTracer(params=["w", "b"], predictions="out", loss="loss", inputs=x, targets=y, store=store)
        for _ in tr.range(12):
            out = x @ w + b
            loss = float(np.mean((out - y) ** 2))
            g = 2 * (out - y) / len(x)
            w, b = w - 0.1 * x.T @ g, b - 0.1 * g.sum(axis=0)
        return tr.trace
    memory = loop(None)
    streamed = loop(StreamStore(tmp_path / "np", flush_every=5, flush_seconds=None))
    _same_tables(memory, streamed)
    assert Trace.load(tmp_path / "np").n_steps == 12
