"""Issue 10 item 5, torch side: several ``backward()`` calls per update are micro-steps of one step.

Each planted bug (a micro-batch loss not divided by k) is named at the first step,
and never as a forgotten ``zero_grad``; its clean twin (``loss / k``) has no finding.
Tracing never changes the numbers.
"""
import contextlib

import numpy as np
import pytest
import torch
from torch import nn

import tracer
from hooks.torch import trace_torch


def _loader_run(divide, k=4, traced=True, opt_cls=torch.optim.SGD, capture="full", every=1):
    torch.manual_seed(0)
    X = torch.randn(256, 10)
    y = (X[:, :3] * torch.tensor([1.0, -1.0, 0.5])).argmax(dim=1)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(X, y), batch_size=16, shuffle=True)
    model = nn.Sequential(nn.Linear(10, 8), nn.ReLU(), nn.Linear(8, 3))
    crit = nn.CrossEntropyLoss()
    opt = opt_cls(model.parameters(), lr=0.05)
    block = trace_torch(strict=True, capture=capture, every=every) if traced else contextlib.nullcontext()
    with block as tr:
        opt.zero_grad()
        for i, (xb, yb) in enumerate(loader):
            loss = crit(model(xb), yb)
            if divide:
                loss = loss / k
            loss.backward()
            if (i + 1) % k == 0:
                opt.step()
                opt.zero_grad()
    return tr, [p.detach().clone() for p in model.parameters()]


@pytest.mark.parametrize("opt_cls", [torch.optim.SGD, torch.optim.Adam])
def test_undivided_accumulation_is_named_at_step_1_and_every_number_checks(opt_cls):
    tr, values = _loader_run(divide=False, opt_cls=opt_cls)
    _, plain = _loader_run(divide=False, traced=False, opt_cls=opt_cls)
    assert all(torch.equal(a, b) for a, b in zip(values, plain))      # bit-identical
    trace = tr.trace
    assert trace.n_steps == 4                                          # optimizer steps, not backward calls
    assert trace.samples["micro"].tolist()[:32] == [0] * 16 + [1] * 16
    assert trace.steps["micro_steps"].eq(4).all()
    report = tracer.check(trace)
    assert report.table["passed"].all(), report.summary()
    assert {"loss", "grad", "update"} <= set(report.table["quantity"])
    (f,) = report.findings
    assert f.kind == "accumulation" and f.step == 1
    assert "4x the mean: the loss was not divided by the accumulation steps" in f.message
    assert "loss = loss / 4" in f.fix
    assert not any(f.kind == "grad_accumulating" or "zero_grad" in f.message for f in report.findings)


def test_divided_accumulation_is_clean():
    tr, values = _loader_run(divide=True)
    _, plain = _loader_run(divide=True, traced=False)
    assert all(torch.equal(a, b) for a, b in zip(values, plain))
    report = tracer.check(tr.trace)
    assert tr.trace.n_steps == 4
    assert report.ok and report.findings == [], report.summary()


def test_summary_capture_and_every_count_optimizer_steps():
    tr, _ = _loader_run(divide=True, capture="summary")
    assert tr.trace.n_steps == 4
    tr, _ = _loader_run(divide=False, every=2)
    assert tr.trace.steps["step"].tolist() == [1, 3]                  # steps 1 and 3 of 4 recorded
    assert tracer.check(tr.trace).table["passed"].all()


def test_manual_update_with_two_backward_calls_per_step():
    torch.manual_seed(1)
    X = torch.randn(32, 3)
    Y = X @ torch.tensor([[1.0], [2.0], [-1.0]])
    w = torch.zeros(3, 1, requires_grad=True)
    with trace_torch(strict=True) as tr:
        for _ in range(5):
            ((X[:16] @ w - Y[:16]) ** 2).mean().backward()
            ((X[16:] @ w - Y[16:]) ** 2).mean().backward()
            with torch.no_grad():
                w -= 0.05 * w.grad
                w.grad = None
    trace = tr.trace
    assert trace.n_steps == 5
    report = tracer.check(trace)
    assert report.table["passed"].all(), report.summary()
    assert [f.kind for f in report.findings] == ["accumulation"]


def test_a_backward_whose_gradient_was_zeroed_is_not_a_micro_step():
    torch.manual_seed(2)
    X = torch.randn(32, 3)
    Y = X.sum(1, keepdim=True)
    model = nn.Linear(3, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with trace_torch(strict=True) as tr:
        for _ in range(4):
            nn.functional.mse_loss(model(X), Y).backward()       # a probe, thrown away
            opt.zero_grad()
            nn.functional.mse_loss(model(X), Y).backward()
            opt.step()
    trace = tr.trace
    assert trace.n_steps == 4 and "micro" not in trace.samples.columns
    report = tracer.check(trace)
    assert report.ok and not report.findings, report.summary()
    np.testing.assert_array_equal(trace.param_values("bias", "after")[:-1], trace.param_values("bias", "before")[1:])
