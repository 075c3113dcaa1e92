"""Chunks' data rows gathered into reused buffers (tracer.checker.feed.RowBuffers).

A chunk's rows are copied into the buffer the previous chunk used; the checker must take
each chunk's results out before the next chunk is gathered. Checked by cutting a shuffled
mini-batch run into one-step chunks: the table is the one a single chunk gives, and a
gradient planted at one step fails at that step only (its clean twin passes).
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import tracer
import tracer.checker.core as core
from tests._trace_factories import mlp_trace
from tracer.checker.feed import RowBuffers


def test_row_buffers_gather_the_rows_into_one_reused_buffer():
    table = np.arange(40, dtype=np.float32).reshape(10, 4)
    gather = RowBuffers()
    first = gather("x", table, np.array([[3, 1], [0, 9]]))
    assert np.array_equal(first, table[np.array([[3, 1], [0, 9]])])
    second = gather("x", table, np.array([[5], [2]]))          # smaller: the same memory
    assert np.array_equal(second, table[np.array([[5], [2]])]) and np.shares_memory(first, second)
    bigger = gather("x", table, np.arange(9).reshape(3, 3))       # larger: a new buffer
    assert np.array_equal(bigger, table[np.arange(9).reshape(3, 3)])
    other = gather("y", table, np.array([[1]]))                 # another input: its own buffer
    assert not np.shares_memory(other, bigger)
    wrapped = gather("x", table, np.array([[-1, 2]]))           # as plain indexing: -1 is the last row
    assert np.array_equal(wrapped, table[[[9, 2]]])
    with pytest.raises(IndexError):
        gather("x", table, np.array([[10]]))


def _check_in_chunks(trace, chunk_bytes, monkeypatch):
    monkeypatch.setattr(core, "CHUNK_BYTES", chunk_bytes)
    return tracer.check(trace)


def test_one_step_chunks_give_the_table_of_one_chunk_and_catch_a_planted_gradient(monkeypatch):
    trace = mlp_trace(epochs=3)
    whole = _check_in_chunks(trace, 256 * 1024**2, monkeypatch)
    steps = _check_in_chunks(trace, 1, monkeypatch)                # one step per chunk
    pd.testing.assert_frame_equal(whole.table, steps.table)
    assert whole.verdict == "passed"                                # the clean twin
    planted = mlp_trace(epochs=3)
    planted.arrays().params["dense/kernel"].grad[4, 1] *= 1.001
    table = _check_in_chunks(planted, 1, monkeypatch).table
    bad = table[(table["quantity"] == "grad") & ~table["passed"]]
    assert bad["step"].tolist() == [5] and bad["param"].tolist() == ["dense/kernel"]
