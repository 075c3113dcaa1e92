"""tracer.checker.diagnose on planted bugs: each finding named, with the step it starts at."""
import numpy as np
import torch
import torch.nn as nn

from hooks.torch import trace_torch
from tracer import Recorder
from tracer.checker.diagnoses import diagnose


def _data():
    torch.manual_seed(2)
    return torch.randn(30, 3), torch.randn(30, 1)


def test_parameter_with_gradient_left_out_of_the_optimizer():
    X, Y = _data()
    model = nn.Linear(3, 1)
    opt = torch.optim.SGD([model.weight], lr=0.1)          # the bias is forgotten
    with trace_torch(strict=True) as tr:
        for _ in range(4):
            opt.zero_grad()
            model.bias.grad = None
            nn.MSELoss()(model(X), Y).backward()
            opt.step()
    found = [f for f in diagnose(tr.trace) if f["kind"] == "never_updated"]
    assert [(f["param"], f["step"]) for f in found] == [("bias", 1)]
    assert "gradient" in found[0]["message"] and "optimizer" in found[0]["fix"]


def test_in_place_update_applied_twice_is_counted():
    X, Y = _data()
    w = torch.zeros(3, 1, requires_grad=True)
    b = torch.zeros(1, requires_grad=True)
    params = [w, b, b]
    with trace_torch(strict=True) as tr:
        for _ in range(3):
            loss = ((X @ w + b - Y) ** 2).sum() / 2 / len(X)
            loss.backward()
            with torch.no_grad():
                for p in params:
                    p -= 0.1 * p.grad
                w.grad.zero_()
                b.grad.zero_()
    trace = tr.trace
    assert trace.steps["updates_b"].tolist() == [2, 2, 2]
    assert trace.steps["updates_w"].tolist() == [1, 1, 1]
    (f,) = [f for f in diagnose(trace) if f["kind"] == "updated_twice"]
    assert f["param"] == "b" and f["step"] == 1 and "p -= 0.1 * p.grad" in f["message"]
    assert trace.meta["update_rule"]["b"]["lr"] == 0.2 and trace.meta["update_rule"]["w"]["lr"] == 0.1


def test_gradients_never_zeroed_without_optimizer():
    X, Y = _data()
    w = torch.zeros(3, 1, requires_grad=True)
    with trace_torch(strict=True) as tr:
        for _ in range(3):
            loss = ((X @ w - Y) ** 2).mean()
            loss.backward()
            with torch.no_grad():
                w -= 0.05 * w.grad          # and no w.grad.zero_()
    (f,) = [f for f in diagnose(tr.trace) if f["kind"] == "grad_accumulating"]
    assert f["step"] == 2 and f["param"] == "w" and "zero" in f["message"] + f["fix"]


def test_double_averaging_needs_both_a_mean_loss_and_a_division_by_the_batch():
    X, Y = _data()
    batch_size = 30
    for reduction, expect in (("mean", True), ("sum", False)):
        w = torch.zeros(3, 1, requires_grad=True)
        with trace_torch(strict=True) as tr:
            for _ in range(2):
                loss = nn.MSELoss(reduction=reduction)(X @ w, Y)
                loss.backward()
                w.data -= 0.1 * w.grad / batch_size
                w.grad.data.zero_()
        found = [f for f in diagnose(tr.trace) if f["kind"] == "double_averaging"]
        assert bool(found) is expect, reduction
        if expect:
            assert "lr/30" in found[0]["message"]


def test_a_clean_trace_from_any_framework_has_no_findings():
    rec = Recorder(meta={"framework": "numpy"})
    rec.set_data(np.arange(4.0).reshape(4, 1), np.arange(4.0).reshape(4, 1))
    w = np.array([[0.5]])
    for step in range(3):
        g = np.array([[1.0]])
        rec.record_step(epoch=1, batch=step + 1, params_before={"w": w}, params_after={"w": w - 0.1 * g},
                        grads={"w": g}, rows=np.arange(4), loss=1.0)
        w = w - 0.1 * g
    assert diagnose(rec.trace()) == []
