"""PyTorch scenarios S0t, S1, S3, S4 traced with unmodified loops (issue 4).

Every run is compared with an untraced run of the same loop (same seeds): the training
numbers must be bit-identical. Recorded values are checked against values recomputed
independently (NumPy, or a torch replay of the user's own ops).
"""
import numpy as np
import pytest
import torch

import tracer
from hooks.torch import trace_torch

import _torch_scenarios as S


def traced(**kwargs):
    return trace_torch(strict=True, **kwargs)


def _same(a, b):
    for key in a:
        if isinstance(a[key], torch.Tensor):
            assert torch.equal(a[key], b[key]), key
        elif isinstance(a[key], dict):
            _same(a[key], b[key])
        else:
            assert a[key] == b[key], key


def _epoch_rows(trace):
    s = trace.samples
    steps = trace.steps[["step", "epoch"]]
    merged = s.merge(steps, on="step")
    return {int(e): g["sample"].to_numpy() for e, g in merged.groupby("epoch")}


def _kinds(trace):
    return {(f.kind, f.param) for f in tracer.check(trace).findings}


def _ops(trace):
    return [(n["op"], n["args"]) for n in trace.meta["program"]["nodes"]]


# ------------------------------------------------------------------------ S0t
@pytest.fixture(scope="module")
def s0t():
    _, plain = S.run_s0t(S.null, epochs=3)
    tr, out = S.run_s0t(traced, epochs=3)
    return tr.trace, plain, out


def test_s0t_bit_identical_and_rows_are_permutations(s0t):
    trace, plain, out = s0t
    _same(plain, out)
    assert trace.n_steps == 3 * 63
    rows = _epoch_rows(trace)
    assert sorted(rows) == [1, 2, 3]
    for e, r in rows.items():
        assert sorted(r.tolist()) == list(range(1000)), e
    assert not np.array_equal(rows[1], rows[2])          # shuffled
    assert trace.steps.groupby("epoch")["batch"].max().tolist() == [63, 63, 63]
    assert trace.steps["batch_size"].iloc[-1] == 1000 - 62 * 16


def test_s0t_meta_and_recorded_values(s0t):
    trace, plain, out = s0t
    m = trace.meta
    assert m["framework"] == "torch"
    # the user wrote loss_fn(y, yhat): the program says so, and knows which one is the prediction
    assert _ops(trace) == [("linear", ["x_batch", "0.weight", "0.bias"]), ("mse_loss", ["y", "yhat"])]
    assert m["program"]["outputs"] == {"loss": "loss", "prediction": "yhat", "target": "y"}
    assert m["program"]["nodes"][0]["label"] == "model.0 (Linear)"
    assert "model" not in m and m["loss"]["name"] == "mse_loss" and m["loss"]["reduction"] == "mean"
    assert m["optimizer"]["name"] == "sgd" and m["optimizer"]["convention"] == "torch"
    assert m["optimizer"]["lr"] == 0.02
    # final recorded values are the model's
    w_after = trace.param_values("0.weight", "after")[-1]
    assert np.array_equal(w_after, out["state"]["0.weight"].numpy())
    # predictions and gradients recomputed with NumPy from the values before each step
    a = trace.arrays()
    x, y = a.inputs, a.targets
    w = trace.param_values("0.weight", "before").astype(np.float64)
    b = trace.param_values("0.bias", "before").astype(np.float64)
    gw = trace.param_values("0.weight", "grad")
    for s in (0, 1, 100, trace.n_steps - 1):
        mask = a.sample_step == s + 1
        rows = a.sample_row[mask]
        pred = x[rows] @ w[s].T + b[s]
        np.testing.assert_allclose(a.sample_pred[mask], pred, rtol=1e-5, atol=1e-5)
        d = pred - y[rows]
        np.testing.assert_allclose(gw[s], 2 * d.T @ x[rows] / len(rows), rtol=1e-3, atol=1e-4)
    # SGD: after = before - lr * grad
    upd = trace.param_values("0.bias", "update")
    np.testing.assert_allclose(upd, -0.02 * trace.param_values("0.bias", "grad"), rtol=1e-4, atol=1e-6)
    assert trace.steps["lr"].eq(0.02).all()
    assert trace.steps["updates_0.weight"].eq(1).all()
    assert not _kinds(trace)


# ------------------------------------------------------------------------- S1
@pytest.fixture(scope="module")
def s1():
    _, plain = S.run_s1(S.null)
    tr, out = S.run_s1(traced)
    return tr.trace, plain, out


def test_s1_bit_identical_and_rows(s1):
    trace, plain, out = s1
    _same(plain, out)
    assert trace.n_steps == 50 * 5
    assert trace.param_names == ["w", "b"]
    rows = _epoch_rows(trace)
    assert len(rows) == 50
    for r in rows.values():
        assert sorted(r.tolist()) == list(range(15))
    preds = trace.samples
    per_epoch = preds.merge(trace.steps[["step", "epoch"]], on="step").groupby("epoch").size()
    assert per_epoch.eq(15).all()
    # the hand-written loss keeps no predictions in its graph: the checker recomputes them
    assert not [c for c in preds.columns if c.startswith("y_pred")]
    np.testing.assert_array_equal(trace.arrays().inputs, out["inputs"].numpy())


def test_s1_values_match_a_torch_replay(s1):
    trace, plain, out = s1
    a = trace.arrays()
    x = torch.from_numpy(a.inputs.astype(np.float32))
    y = torch.from_numpy(a.targets.astype(np.float32))
    for s in (0, 7, 249):
        w = torch.from_numpy(trace.param_values("w", "before")[s].copy()).requires_grad_(True)
        b = torch.from_numpy(trace.param_values("b", "before")[s].copy()).requires_grad_(True)
        rows = torch.from_numpy(a.sample_row[a.sample_step == s + 1])
        preds = x[rows] @ w.t() + b
        d = preds - y[rows]
        loss = torch.sum(d * d) / d.numel()
        loss.backward()
        assert trace.steps["loss"].iloc[s] == pytest.approx(float(loss.detach()), rel=1e-7)
        assert np.array_equal(trace.param_values("w", "grad")[s], w.grad.numpy())
        assert np.array_equal(trace.param_values("b", "grad")[s], b.grad.numpy())
        with torch.no_grad():
            w -= w.grad * 1e-6
        assert np.array_equal(trace.param_values("w", "after")[s], w.detach().numpy())


def test_s1_meta_update_rule_and_check(s1):
    trace, _, _ = s1
    m = trace.meta
    assert _ops(trace) == [("transpose", ["w"]), ("matmul", ["x", "transpose1"]), ("add", ["matmul1", "b"]),
                           ("sub", ["preds", "y"]), ("mul", ["sub1", "sub1"]), ("sum", ["mul1"]),
                           ("div", ["sum1", 6.0])]
    assert m["loss"] == {"name": "written by hand", "reduction": None}
    assert trace.arrays().sample_pred is None      # the hand-written loss saves no predictions
    assert m["optimizer"] is None
    assert m["update_rule"]["w"]["text"] == "w -= 1e-06 * grad"
    assert m["update_rule"]["b"]["lr"] == 1e-06
    report = tracer.check(trace)
    assert report.ok, str(report)
    assert not _kinds(trace)


# ------------------------------------------------------------------------- S3
@pytest.fixture(scope="module")
def s3():
    _, plain = S.run_s3(S.null)
    tr, out = S.run_s3(traced)
    return tr.trace, plain, out


def test_s3_generator_rows_found_without_arguments(s3):
    trace, plain, out = s3
    _same(plain, out)
    assert trace.n_steps == 5 * 100
    assert trace.meta["torch"]["data"] == "matched"
    np.testing.assert_array_equal(trace.arrays().inputs, out["features"].numpy())
    np.testing.assert_array_equal(trace.arrays().targets, out["labels"].numpy())
    rows = _epoch_rows(trace)
    assert sorted(rows) == [1, 2, 3, 4, 5]
    for r in rows.values():
        assert sorted(r.tolist()) == list(range(1000))


def test_s3_values_and_rule(s3):
    trace, _, out = s3
    a = trace.arrays()
    w = trace.param_values("w", "before").astype(np.float64)
    b = trace.param_values("b", "before").astype(np.float64)
    for s in (0, 250, 499):
        mask = a.sample_step == s + 1
        rows = a.sample_row[mask]
        pred = a.inputs[rows] @ w[s] + b[s]
        d = pred - a.targets[rows]
        assert trace.steps["loss"].iloc[s] == pytest.approx(float((d ** 2 / 2).sum()), rel=1e-4)
        np.testing.assert_allclose(trace.param_values("w", "grad")[s], a.inputs[rows].T @ d, rtol=1e-3, atol=1e-4)
    assert _ops(trace)[-3:] == [("square", ["sub1"]), ("div", ["square1", 2.0]), ("sum", ["l"])]
    assert trace.meta["update_rule"]["w"]["text"] == "w -= 0.003 * grad"
    assert not _kinds(trace)     # sum loss / batch_size is correct: no double averaging


def test_s3_with_explicit_data_argument():
    tr, out = S.run_s3(traced, num_epochs=1, data=None)
    features, labels = out["features"], out["labels"]
    tr2, out2 = S.run_s3(traced, num_epochs=1, data=(features, labels))
    assert np.array_equal(tr.trace.arrays().sample_row, tr2.trace.arrays().sample_row)


# ------------------------------------------------------------------------- S4
@pytest.fixture(scope="module")
def s4_reg():
    kw = dict(num_examples=600, n_train=400, num_epochs=2)
    _, plain = S.run_s4_regression(S.null, **kw)
    tr, out = S.run_s4_regression(traced, **kw)
    return tr.trace, plain, out


def test_s4_regression_traced(s4_reg):
    trace, plain, out = s4_reg
    _same(plain, out)
    assert trace.n_steps == 2 * 8
    assert trace.param_names == ["W1", "b1", "W2", "b2"]
    assert _ops(trace) == [("matmul", ["x", "W1"]), ("add", ["matmul1", "b1"]), ("maximum", ["add1", 0.0]),
                           ("matmul", ["maximum1", "W2"]), ("add", ["matmul2", "b2"]), ("mse_loss", ["y_hat", "y"])]
    a = trace.arrays()
    s = 5
    mask = a.sample_step == s + 1
    x = a.inputs[a.sample_row[mask]].astype(np.float64)
    p = {n: trace.param_values(n, "before")[s].astype(np.float64) for n in trace.param_names}
    pred = np.maximum(x @ p["W1"] + p["b1"], 0) @ p["W2"] + p["b2"]
    np.testing.assert_allclose(a.sample_pred[mask], pred, rtol=1e-4, atol=1e-6)
    assert trace.meta["update_rule"]["W1"]["text"] == "W1 -= 0.0002 * grad"
    assert _kinds(trace) == {("double_averaging", None)}
    msg = next(f.message for f in tracer.check(trace).findings)
    assert "lr/50" in msg and "batch_size" in msg


@pytest.fixture(scope="module")
def s4_mc():
    _, plain = S.run_s4_multiclass(S.null)
    tr, out = S.run_s4_multiclass(traced)
    return tr.trace, plain, out


def test_s4_multiclass_bugs_named(s4_mc):
    trace, plain, out = s4_mc
    _same(plain, out)
    assert set(trace.param_names) == {"W1", "b1", "W2", "b2"}
    assert trace.meta["loss"]["name"] == "cross_entropy"
    assert trace.meta["torch"]["frozen"] == ["b1"]
    assert trace.steps["updates_b2"].eq(2).all()
    assert trace.steps["updates_W1"].eq(1).all()
    kinds = _kinds(trace)
    assert ("never_updated", "b1") in kinds
    assert ("updated_twice", "b2") in kinds
    assert ("double_averaging", None) in kinds
    rules = trace.meta["update_rule"]
    assert rules["b2"]["lr"] == pytest.approx(2 * rules["W1"]["lr"])
    # b2 moved by two plain-SGD steps of lr/B each
    upd = trace.param_values("b2", "update")
    np.testing.assert_allclose(upd, -2 * 0.01 / 32 * trace.param_values("b2", "grad"), rtol=1e-4)
    np.testing.assert_array_equal(trace.param_values("b1", "update"), 0)
    # targets are class indices, predictions the 10 logits
    assert trace.arrays().sample_pred.shape[1] == 10
    assert set(np.unique(trace.arrays().targets)) <= set(range(10))


# --------------------------------------------------------------- zero_grad bug
def test_forgotten_zero_grad_caught_at_step_2():
    _, plain = S.run_s0t(S.null, epochs=1, zero_grad=False)
    tr, out = S.run_s0t(traced, epochs=1, zero_grad=False)
    _same(plain, out)
    trace = tr.trace
    found = [f for f in tracer.check(trace).findings if f.kind == "grad_accumulating"]
    assert len(found) == 1 and found[0].step == 2
    assert "zero_grad" in found[0].fix
    assert trace.steps["stale_grad_0.weight"].iloc[0] == 0
    assert trace.steps["stale_grad_0.weight"].iloc[1:].eq(1).all()
    # the recorded gradient is the accumulated one the optimizer used
    g = trace.param_values("0.bias", "grad")
    np.testing.assert_allclose(trace.param_values("0.bias", "update"), -0.02 * g, rtol=1e-4, atol=1e-7)


def test_s3_summary_capture_still_tells_epochs_apart():
    _, plain = S.run_s3(S.null, num_epochs=2)
    tr, out = S.run_s3(lambda **k: trace_torch(strict=True, capture="summary", **k), num_epochs=2)
    _same(plain, out)
    trace = tr.trace
    assert trace.steps.groupby("epoch").size().tolist() == [100, 100]
    assert len(trace.params) == 0
    ratio = trace.steps["update_norm_w"] / trace.steps["grad_norm_w"]
    np.testing.assert_allclose(ratio, 0.003, rtol=1e-3)
    assert trace.meta["update_rule"]["w"]["text"] == "w -= 0.003 * grad"


def test_s4_page_as_one_script_gives_one_run_per_loop():
    """Seed 004 runs its loops one after another; traced in one block (as ``tracer run``
    does), each loop is its own run and the multi-class bugs are still named, although
    the first forward pass watched was the regression's."""
    tr = trace_torch(strict=True)
    with tr:
        S.run_s4_regression(S.null, num_examples=300, n_train=200, num_epochs=1)
        S.run_s4_multiclass(S.null, n=64, num_epochs=1)
    reg, mc = tr.traces
    assert reg.n_steps == 4 and mc.n_steps == 2
    assert _kinds(reg) == {("double_averaging", None)}
    assert {("never_updated", "b1"), ("updated_twice", "b2")} <= _kinds(mc)
    assert ("add", ["matmul1", "b1"]) in _ops(mc) and mc.meta["torch"]["frozen"] == ["b1"]
