"""Recorder defects the fuzz suite found, each pinned by a planted case and its clean twin.

- predictions that first appear after steps recorded batch rows without them used to
  leave ``samples`` with columns of different lengths (the table could not be built);
- ``extra={"step": ...}`` silently overwrote the recorder's own step numbers;
- a zero-size parameter read back from disk lost the recorded step numbers of all.
"""
from __future__ import annotations

import numpy as np
import pytest

from tracer import Recorder, Trace
from tracer.errors import TraceInputError


def _record(rec, s, **kw):
    w = np.array([1.0 * s, 2.0])
    return rec.record_step(epoch=1, batch=s, params_before={"w": w, **kw.pop("extra_params", {})},
                           params_after={"w": w + 1, **kw.pop("extra_after", {})}, **kw)


def test_predictions_that_start_late_are_back_filled(tmp_path):
    rec = Recorder()
    rec.set_data(np.arange(4.0), np.arange(4.0))
    _record(rec, 1, rows=[0, 1])                               # rows, no predictions yet
    _record(rec, 2, rows=[2], y_pred=[[5.0]])
    samples = rec.trace().samples
    assert samples["y_pred"].tolist()[:2] == [pytest.approx(np.nan, nan_ok=True)] * 2
    assert samples["y_pred"].iloc[2] == 5.0 and samples["sample"].tolist() == [0, 1, 2]
    back = Trace.load(rec.trace().save(tmp_path / "t.trace"))
    assert back.samples["y_pred"].iloc[2] == 5.0


def test_extra_columns_may_not_overwrite_the_recorders_own():
    rec = Recorder()
    with pytest.raises(TraceInputError, match="extra: 'step' is a steps column the recorder fills itself"):
        _record(rec, 1, extra={"step": 99})
    _record(rec, 2, extra={"opt_step": 99})                   # the clean twin
    assert rec.trace().steps["opt_step"].tolist() == [99.0]


def test_a_zero_size_parameter_keeps_the_step_numbers_on_load(tmp_path):
    rec = Recorder(every=2)
    for s in range(1, 6):
        _record(rec, s, extra_params={"empty": np.zeros((0, 3))}, extra_after={"empty": np.zeros((0, 3))})
    trace = rec.trace()
    back = Trace.load(trace.save(tmp_path / "t.trace"))
    np.testing.assert_array_equal(back.arrays().param_step, [1, 3, 5])
    assert back.param_values("empty", "before").shape == trace.param_values("empty", "before").shape == (3, 0, 3)
    np.testing.assert_array_equal(back.param_values("w", "after")[:, 0], [2, 4, 6])
