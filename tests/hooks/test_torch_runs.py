"""Issue 16, torch: runs split where training restarts, steps are optimizer steps, rows stored once.

- a new optimizer object, a reset optimizer state, or a changed set of trained tensors
  starts a new run, checked with its own optimizer;
- under ``torch.set_default_device`` the step count equals the loop's iterations, and a
  ``backward`` with no update before the next one is not a step of its own;
- a full-batch loop's rows are stored once, not appended at every step.
"""
import math

import numpy as np
import torch
from torch import nn

import tracer
from hooks.torch import trace_torch


def _data():
    torch.manual_seed(0)
    X = torch.randn(64, 4)
    return X, X @ torch.tensor([[1.0], [-2.0], [0.5], [0.0]]) + 0.1


def _epochs(model, opt, X, Y, n, batch=16):
    for _ in range(n):
        for i in range(0, len(X), batch):
            opt.zero_grad()
            nn.functional.mse_loss(model(X[i:i + batch]), Y[i:i + batch]).backward()
            opt.step()


def test_a_new_optimizer_on_the_same_model_is_a_new_run_checked_with_its_own_rule():
    X, Y = _data()
    model = nn.Linear(4, 1)
    with trace_torch(strict=True) as tr:
        _epochs(model, torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9), X, Y, 2)
        _epochs(model, torch.optim.Adam(model.parameters(), lr=1e-3), X, Y, 2)
    first, second = tr.traces
    assert (first.n_steps, second.n_steps) == (8, 8)
    assert first.meta["optimizer"]["name"] == "sgd" and second.meta["optimizer"]["name"] == "adam"
    assert second.steps["opt_step"].tolist() == list(range(1, 9))     # Adam's own count, from 1
    for t in tr.traces:
        report = tracer.check(t)
        assert report.ok, str(report)


def test_a_reset_optimizer_state_is_a_new_run():
    X, Y = _data()
    model = nn.Linear(4, 1)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    with trace_torch(strict=True) as tr:
        _epochs(model, opt, X, Y, 1)
        opt.state.clear()                       # training restarts: Adam's moments from zero
        _epochs(model, opt, X, Y, 1)
    assert [t.n_steps for t in tr.traces] == [4, 4]
    for t in tr.traces:
        assert t.steps["opt_step"].tolist() == [1, 2, 3, 4]
        assert tracer.check(t).ok


def test_a_changed_set_of_trained_tensors_is_a_new_run():
    X, Y = _data()
    model = nn.Sequential(nn.Linear(4, 3), nn.Tanh(), nn.Linear(3, 1))
    model[2].requires_grad_(False)                                   # the head frozen on purpose
    opt = torch.optim.SGD(model[0].parameters(), lr=0.05)          # the body only
    with trace_torch(strict=True) as tr:
        _epochs(model, opt, X, Y, 1)
        model[2].requires_grad_(True)
        opt.add_param_group({"params": model[2].parameters()})      # now the whole model
        _epochs(model, opt, X, Y, 1)
    first, second = tr.traces
    assert (first.n_steps, second.n_steps) == (4, 4)
    # the frozen head is a constant of the first run's program (not a trained parameter, not a bug)
    assert first.param_names == ["0.bias", "0.weight"] and first.meta["torch"]["frozen"] == []
    assert len(first.meta["program"]["consts"]) == 2
    for t in tr.traces:
        assert tracer.check(t).ok, str(tracer.check(t))


def test_default_device_and_factory_functions_give_one_step_per_iteration():
    torch.manual_seed(0)
    with trace_torch(strict=True) as tr:
        torch.set_default_device("cpu")
        try:
            x = torch.linspace(-math.pi, math.pi, 500, device="cpu")
            y = torch.sin(x)
            a = torch.zeros((), requires_grad=True)
            b = torch.zeros((), requires_grad=True)
            for _ in range(25):
                loss = (a + b * x - y).pow(2).sum()
                loss.backward()
                with torch.no_grad():
                    a -= 1e-4 * a.grad
                    b -= 1e-4 * b.grad
                    a.grad = None
                    b.grad = None
        finally:
            torch.set_default_device(None)
    trace = tr.trace
    assert trace.n_steps == 25
    assert trace.steps["updates_a"].eq(1).all()
    assert not np.isnan(trace.param_values("a", "grad")).any()
    assert tracer.check(trace).ok


def test_a_backward_without_an_update_is_not_a_step():
    X, Y = _data()
    model = nn.Linear(4, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    w = torch.zeros(4, 1, requires_grad=True)
    with trace_torch() as tr:
        for i in range(0, 64, 16):              # two micro-batches per optimizer step
            opt.zero_grad()
            nn.functional.mse_loss(model(X[i:i + 8]), Y[i:i + 8]).backward()
            nn.functional.mse_loss(model(X[i + 8:i + 16]), Y[i + 8:i + 16]).backward()
            opt.step()
        for _ in range(3):                      # a hand-written loop with an extra backward
            ((X @ w - Y) ** 2).mean().backward()
            ((X @ w - Y) ** 2).mean().backward()
            with torch.no_grad():
                w -= 0.01 * w.grad
                w.grad = None
    assert [t.n_steps for t in tr.traces] == [4, 3]
    assert any("folded" in n for n in tr.traces[0].meta["notes"])


def test_full_batch_rows_are_stored_once():
    X, Y = _data()
    model = nn.Linear(4, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    with trace_torch(strict=True) as tr:
        for _ in range(30):
            opt.zero_grad()
            nn.functional.mse_loss(model(X), Y).backward()
            opt.step()
    trace = tr.trace
    a = trace.arrays()
    assert a.inputs.shape == (64, 4) and a.targets.shape == (64, 1)
    assert trace.meta["torch"]["data"] == "full"
    per_step = np.bincount(a.sample_step)[1:]
    assert (per_step == 64).all() and (a.sample_row.reshape(30, 64) == np.arange(64)).all()
    assert tracer.check(trace).ok
