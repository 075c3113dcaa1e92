"""``Recorder.nbytes`` counts everything the recorder keeps, and ``max_bytes`` holds.

Without a store a full capture that would pass the budget falls back to summary before
copying; with a store it spills to disk and keeps capturing in full, with ``nbytes``
within the budget after every step. ``0`` means zero and ``None`` means unlimited.
"""
from __future__ import annotations

import warnings

import numpy as np
import pytest

from tracer import Recorder, Trace
from tracer.errors import TraceInputError
from tracer.store import StreamStore


def _step(rec, s, size=1000, rows=50):
    w = np.full(size, float(s))
    return rec.record_step(epoch=1, batch=s, params_before={"w": w}, params_after={"w": w + 1},
                           grads={"w": w * 0}, rows=np.arange(rows), y_pred=np.zeros((rows, 1)),
                           loss=float(s), lr=0.1, state={"w": {"m": w * 2}})


def test_nbytes_counts_data_rows_predictions_scalars_and_notes():
    rec = Recorder(max_bytes=None)
    empty = rec.nbytes
    x, y = np.ones((5000, 3)), np.ones((5000, 1))
    rec.set_data(x, y)
    assert rec.nbytes - empty == x.nbytes + y.nbytes
    after_data = rec.nbytes
    _step(rec, 1, size=10, rows=5000)
    # the batch rows (step + row, 16 bytes each) and predictions (8 bytes) of 5000 rows
    assert rec.nbytes - after_data >= 5000 * 24
    held = rec.nbytes
    for s in range(2, 200):
        rec.record_step(epoch=1, batch=s, params_before={}, params_after={}, loss=1.0, extra={"k": s})
    assert rec.nbytes - held >= 198 * 6 * 8          # six scalar columns, one slot each a step
    before_note = rec.nbytes
    rec.note("x" * 10_000)
    assert rec.nbytes - before_note >= 10_000


def test_without_a_store_the_budget_is_checked_before_copying():
    budget = 200_000
    rec = Recorder(max_bytes=budget)
    peak = 0
    with pytest.warns(RuntimeWarning, match="would pass max_bytes=200000"):
        for s in range(1, 101):
            _step(rec, s)
            if rec.full:
                peak = max(peak, rec.nbytes)
    assert 0 < peak <= budget
    t = rec.trace()
    assert t.meta["capture"]["mode"] == "summary"
    assert len(t.steps) == 100 and t.n_steps == 100
    recorded_in_full = len(t.params) // 1000
    assert recorded_in_full >= 1 and "update_norm_w" in t.steps.columns
    assert any("would pass max_bytes" in n for n in t.meta["notes"])


def test_with_a_store_full_capture_spills_and_memory_stays_within_the_budget(tmp_path):
    budget = 200_000
    store = StreamStore(tmp_path / "run.trace", flush_every=10_000, flush_seconds=None)
    rec = Recorder(max_bytes=budget, store=store)
    rec.set_data(np.arange(100.0).reshape(50, 2), np.arange(50.0))
    peak = 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")              # no fallback warning
        for s in range(1, 101):
            _step(rec, s)
            peak = max(peak, rec.nbytes)
    assert peak <= budget and rec.full
    assert store.chunks > 1                          # it spilled, more than once
    rec.close()
    back = Trace.load(tmp_path / "run.trace")
    assert back.meta["capture"]["mode"] == "full" and back.n_steps == 100
    np.testing.assert_array_equal(back.param_values("w", "before")[:, 0], np.arange(1, 101))
    np.testing.assert_array_equal(back.param_values("w", "m")[:, 5], 2 * np.arange(1, 101))
    assert len(back.samples) == 100 * 50


def test_zero_means_zero():
    rec = Recorder(max_bytes=0)
    with pytest.warns(RuntimeWarning, match="max_bytes=0"):
        rec.set_data(np.ones((10, 2)), np.ones(10))
        _step(rec, 1, size=10, rows=10)
    t = rec.trace()
    assert t.meta["capture"]["mode"] == "summary" and t.param_names == [] and len(t.data.columns) == 1
    assert t.steps["loss"].tolist() == [1.0]


def test_zero_with_a_store_writes_every_step_at_once(tmp_path):
    store = StreamStore(tmp_path / "run.trace", flush_every=1000, flush_seconds=None)
    rec = Recorder(max_bytes=0, store=store)
    for s in range(1, 6):
        _step(rec, s, size=10_000, rows=10)
        assert store.chunks == s and rec.nbytes < 2_000       # the 240 kB step went to disk
    rec.close()
    assert Trace.load(tmp_path / "run.trace").param_values("w", "after")[:, 0].tolist() == [2, 3, 4, 5, 6]


def test_none_means_unlimited_and_bad_budgets_are_refused():
    rec = Recorder(max_bytes=None)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for s in range(1, 30):
            _step(rec, s, size=20_000)
    assert rec.full and rec.nbytes > 29 * 3 * 20_000 * 8
    for bad in (-1, "2G", True, 1.5):
        with pytest.raises(TraceInputError, match="max_bytes: expected a non-negative integer or None"):
            Recorder(max_bytes=bad)


def test_a_budget_that_cut_the_run_to_summaries_reads_incomplete_with_the_steps_checked():
    """Issue 11 item 6: a run recorded in full only up to its budget is not "OK - N steps":
    the verdict is INCOMPLETE and the summary says how many steps were checked of how many."""
    import warnings

    import tracer
    from _trace_factories import long_trace

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        trace = long_trace(iterations=2000, max_bytes=200_000)
    assert trace.meta["capture"]["mode"] == "summary" and trace.n_steps == 2000
    full = int(trace.samples["step"].nunique())
    assert 0 < full < 2000
    report = tracer.check(trace)
    assert report.verdict == "incomplete"
    first = report.summary().splitlines()[0]
    assert "2000 steps recorded" in first and f"{full} checked" in first, first
    assert any("recorded at 2000 steps, checked at" in reason for reason in report.cannot_check)


def test_a_store_that_does_not_spill_bounds_the_trace_read_back(tmp_path):
    """``StreamStore(spill=False)`` (what ``steptrace run`` uses): the budget counts what the
    run costs when read back whole, so past it the run records summaries, and the tables
    read back stay within the budget."""
    budget = 3_000_000
    rec = Recorder({"framework": "numpy"}, max_bytes=budget,
                   store=StreamStore(tmp_path / "run", flush_every=5, flush_seconds=None, spill=False))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for s in range(1, 101):
            _step(rec, s)
    rec.close()
    trace = Trace.load(tmp_path / "run")
    assert trace.n_steps == 100 and trace.meta["capture"]["mode"] == "summary"
    full = trace.params["step"].nunique()
    assert 0 < full < 100
    held = sum(int(t.memory_usage(index=False).sum()) for t in trace.tables().values())
    assert held <= budget, (held, budget, full)
