"""tracer.recorder: what a hook hands over comes back exactly, and memory stays bounded."""
from __future__ import annotations

import numpy as np
import pytest

from tracer import Recorder
from tracer.errors import TraceInputError


def _step(rec, k, params, grads=None, state=None, **kw):
    before = {n: v for n, v in params.items()}
    after = {n: v - 0.1 * (k + 1) for n, v in params.items()}
    return rec.record_step(epoch=1, batch=k + 1, params_before=before, params_after=after, grads=grads,
                           state=state, **kw)


def test_values_round_trip_exactly():
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(6, 2)), rng.normal(size=(6, 1))
    rec = Recorder({"framework": "numpy"})
    rec.set_data(x, y)
    recorded = []
    for k in range(3):
        w = rng.normal(size=(2, 1)).astype(np.float32)
        g = rng.normal(size=(2, 1)).astype(np.float32)
        m = rng.normal(size=(2, 1)).astype(np.float32)
        rows = rng.permutation(6)[:2]
        pred = rng.normal(size=(2, 1))
        step = rec.record_step(epoch=1, batch=k + 1, params_before={"w": w}, params_after={"w": w - g},
                               grads={"w": g}, rows=rows, y_pred=pred, loss=float(k) / 3, lr=0.1,
                               state={"w": {"momentum": m}}, logs={"loss": 1.5}, extra={"opt_step": k + 1})
        recorded.append((w, g, m, rows, pred))
        assert step == k + 1
    trace = rec.trace()
    assert trace.param_values("w", "before").tobytes() == np.stack([r[0] for r in recorded]).tobytes()
    assert trace.param_values("w", "grad").tobytes() == np.stack([r[1] for r in recorded]).tobytes()
    assert trace.param_values("w", "momentum").tobytes() == np.stack([r[2] for r in recorded]).tobytes()
    assert trace.param_values("w", "before").dtype == np.float32
    samples = trace.samples
    assert samples["sample"].tolist() == np.concatenate([r[3] for r in recorded]).tolist()
    assert samples["y_pred"].to_numpy().tobytes() == np.concatenate([r[4] for r in recorded]).ravel().tobytes()
    steps = trace.steps
    assert steps["loss"].tolist() == [0.0, 1 / 3, 2 / 3] and steps["logged_loss"].tolist() == [1.5] * 3
    assert steps["opt_step"].tolist() == [1, 2, 3] and steps["batch_size"].tolist() == [2, 2, 2]
    assert trace.data[["x0", "x1"]].to_numpy().tobytes() == x.tobytes()
    assert trace.meta["data"] == {"n_rows": 6, "inputs": ["x0", "x1"], "targets": ["y"]}
    assert trace.meta["params"] == [{"name": "w", "shape": [2, 1]}]


def test_inputs_are_copied_once_not_referenced():
    w = np.zeros(2)
    rec = Recorder()
    rec.record_step(epoch=1, batch=1, params_before={"w": w}, params_after={"w": w})
    w[:] = 5
    assert rec.trace().param_values("w", "before").tolist() == [[0.0, 0.0]]


def test_a_parameter_first_seen_late_is_padded_with_nan():
    rec = Recorder()
    w, b = np.ones((2,)), np.ones((1,))
    _step(rec, 0, {"w": w})
    _step(rec, 1, {"w": w, "b": b}, state={"b": {"v": np.full(1, 3.0)}})
    _step(rec, 2, {"w": w})                          # b absent from this step
    trace = rec.trace()
    b_before = trace.param_values("b", "before")[:, 0]
    assert np.isnan(b_before[0]) and b_before[1] == 1.0 and np.isnan(b_before[2])
    v = trace.param_values("b", "v")[:, 0]
    assert np.isnan(v[0]) and v[1] == 3.0 and np.isnan(v[2])
    assert not np.isnan(trace.param_values("w", "before")).any()


def test_every_k_records_one_step_in_k_and_counts_them_all():
    rec = Recorder(every=3)
    assert [rec.should_record(s) for s in range(1, 8)] == [True, False, False, True, False, False, True]
    for k in range(7):
        assert _step(rec, k, {"w": np.ones(2)}) == k + 1
    trace = rec.trace()
    assert rec.steps_seen == 7 and trace.steps["step"].tolist() == [1, 4, 7]
    assert trace.params["step"].unique().tolist() == [1, 4, 7]
    assert {k: trace.meta["capture"][k] for k in ("mode", "every", "steps_seen")} == \
        {"mode": "full", "every": 3, "steps_seen": 7}
    assert trace.meta["capture"]["given"] == {"loss": 0, "y_pred": 0, "grads": {}}   # 3 recorded, none given


def test_summary_capture_norms_equal_numpy_norms():
    rng = np.random.default_rng(2)
    rec = Recorder(capture="summary")
    before, after, grad = rng.normal(size=(3, 2)), rng.normal(size=(3, 2)), rng.normal(size=(3, 2))
    rec.record_step(epoch=1, batch=1, params_before={"w": before}, params_after={"w": after},
                    grads={"w": grad}, loss=1.0)
    rec.record_step(epoch=1, batch=2, params_before={"w": after}, params_after={"w": after})
    steps = rec.trace().steps
    assert steps["value_norm_w"][0] == np.linalg.norm(before)
    assert steps["update_norm_w"][0] == np.linalg.norm(after - before)
    assert steps["grad_norm_w"][0] == np.linalg.norm(grad) and np.isnan(steps["grad_norm_w"][1])
    assert len(rec.trace().params) == 0


def test_max_bytes_falls_back_to_summary_with_a_warning_and_a_note():
    rec = Recorder(max_bytes=10_000)
    big = np.ones(1000)
    with pytest.warns(RuntimeWarning, match="max_bytes"):
        _step(rec, 0, {"w": big}, grads={"w": big})
    assert rec.capture == "summary" and not rec.full
    _step(rec, 1, {"w": big}, grads={"w": big})
    trace = rec.trace()
    assert trace.meta["capture"]["mode"] == "summary"
    assert any("max_bytes=10000" in n for n in trace.meta["notes"])
    # the budget is checked before copying: step 1 would pass it, so it is summarised too
    assert len(trace.params) == 0
    assert trace.steps["value_norm_w"].tolist() == [np.linalg.norm(big)] * 2


def test_no_limit_never_falls_back():
    rec = Recorder(max_bytes=None)
    _step(rec, 0, {"w": np.ones(100_000)})
    assert rec.full


def test_bad_input_names_the_argument():
    with pytest.raises(TraceInputError, match="every"):
        Recorder(every=0)
    with pytest.raises(TraceInputError, match="capture"):
        Recorder(capture="all")
    rec = Recorder()
    with pytest.raises(TraceInputError, match="same number of rows"):
        rec.set_data(np.ones((3, 1)), np.ones((2, 1)))
    rec.set_data(np.ones((3, 1)), np.ones((3, 1)))
    with pytest.raises(TraceInputError, match="rows: expected positions in 0..2"):
        rec.record_step(epoch=1, batch=1, params_before={}, params_after={}, rows=[5])
    with pytest.raises(TraceInputError, match="same names"):
        rec.record_step(epoch=1, batch=1, params_before={"w": 1.0}, params_after={"v": 1.0})


def test_epoch_logs_notes_and_the_current_epoch():
    rec = Recorder()
    assert rec.current_epoch is None and rec.n_rows is None
    rec.record_step(epoch=2, batch=1, params_before={}, params_after={})
    rec.record_epoch(2, {"loss": np.float32(0.5), "name": "x"})
    rec.note("hello")
    trace = rec.trace()
    assert rec.current_epoch == 2
    assert trace.epochs["logged_loss"].tolist() == [0.5] and trace.epochs["logged_name"].tolist() == ["x"]
    assert trace.meta["notes"] == ["hello"]
