"""Issue 10 item 7, torch side: clipping between backward and ``optimizer.step()`` is checked.

``clip_grad_norm_`` (any norm type, foreach or not, imported before the block or
not) and ``clip_grad_value_`` are recorded as ``meta["grad_transform"]`` with the raw
gradient in ``params.grad``, so the clipped update checks; clipping at every step and
clipping that never fires are notes; any other change to a gradient (``p.grad *= 2``,
``clamp_``, a new ``.grad``) makes that parameter's update "cannot check", never a pass
and never a false alarm. Tracing never changes the numbers.
"""
import contextlib

import pytest
import torch
from torch import nn
from torch.nn.utils import clip_grad_norm_       # imported before any trace_torch block

import tracer
from hooks.torch import trace_torch

TWEAKS = {
    "none": lambda m: None,
    "norm": lambda m: clip_grad_norm_(m.parameters(), 1.0),
    "norm_foreach_tiny": lambda m: torch.nn.utils.clip_grad_norm_(m.parameters(), 1e-3, foreach=True),
    "norm_loop": lambda m: torch.nn.utils.clip_grad_norm_(list(m.parameters()), 1.0, foreach=False),
    "norm_inf": lambda m: torch.nn.utils.clip_grad_norm_(m.parameters(), 1.0, norm_type="inf"),
    "norm_huge": lambda m: torch.nn.utils.clip_grad_norm_(m.parameters(), 1e6),
    "norm_one_layer": lambda m: torch.nn.utils.clip_grad_norm_(m[0].parameters(), 0.5),
    "value": lambda m: torch.nn.utils.clip_grad_value_(m.parameters(), 0.5),
    "hand_scale": lambda m: m[0].weight.grad.mul_(2),
    "hand_clamp": lambda m: m[2].bias.grad.clamp_(-0.01, 0.01),
    "new_grad": lambda m: setattr(m[2].bias, "grad", m[2].bias.grad * 0.5),
}


def _run(tweak, traced=True, opt_cls=torch.optim.SGD, steps=12):
    torch.manual_seed(0)
    X = torch.randn(64, 5)
    Y = X @ torch.randn(5, 1) * 3
    model = nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 1))
    opt = opt_cls(model.parameters(), lr=0.05)
    with (trace_torch(strict=True) if traced else contextlib.nullcontext()) as tr:
        for i in range(steps):
            j = (16 * i) % 64
            opt.zero_grad()
            nn.functional.mse_loss(model(X[j:j + 16]), Y[j:j + 16]).backward()
            TWEAKS[tweak](model)
            opt.step()
    return tr, [p.detach().clone() for p in model.parameters()]


def _traced(tweak, opt_cls=torch.optim.SGD):
    tr, values = _run(tweak, opt_cls=opt_cls)
    _, plain = _run(tweak, traced=False, opt_cls=opt_cls)
    assert all(torch.equal(a, b) for a, b in zip(values, plain))         # bit-identical
    return tr.trace, tracer.check(tr.trace)


@pytest.mark.parametrize("tweak", ["norm", "norm_foreach_tiny", "norm_loop", "norm_inf", "norm_one_layer", "value"])
@pytest.mark.parametrize("opt_cls", [torch.optim.SGD, torch.optim.Adam])
def test_clipping_is_recorded_and_the_clipped_update_checks(tweak, opt_cls):
    trace, report = _traced(tweak, opt_cls)
    (t,) = trace.meta["grad_transform"]
    assert t["op"] == ("clip_value" if tweak == "value" else "clip_norm")
    assert "test_torch_clipping.py:" in t["source"]
    assert report.ok, report.summary()
    assert report.table.query("quantity == 'update'")["passed"].all()
    if tweak == "norm_one_layer":
        assert t["params"] == ["0.weight", "0.bias"]


def test_clipping_at_every_step_is_a_note_with_the_evidence():
    _, report = _traced("norm_foreach_tiny")
    (f,) = [f for f in report.findings if f.kind == "clipping"]
    assert not f.failed and "at every one of the 12 recorded steps" in f.message
    assert "threshold 0.001" in f.message and "x the threshold" in f.message and f.fix


def test_clipping_that_never_fires_is_a_note():
    trace, report = _traced("norm_huge")
    assert trace.meta["grad_transform"][0]["max_norm"] == 1e6
    assert report.ok
    (f,) = [f for f in report.findings if f.kind == "clipping"]
    assert not f.failed and "never changed the gradient" in f.message and "remove" in f.fix


def test_no_clipping_no_transform_no_finding():
    trace, report = _traced("none")
    assert "grad_transform" not in trace.meta
    assert report.ok and not report.findings


@pytest.mark.parametrize("tweak,param", [("hand_scale", "0.weight"), ("hand_clamp", "2.bias"), ("new_grad", "2.bias")])
def test_an_unmodelled_gradient_change_cannot_be_checked(tweak, param):
    trace, report = _traced(tweak)
    assert set(trace.meta["optimizer"]["unmodelled"]) == {param}
    assert report.verdict == "incomplete", report.summary()
    assert any(param in c and "does not model" in c for c in report.cannot_check)
    assert report.table["passed"].all()                                   # no false alarm elsewhere
    assert param not in set(report.table.query("quantity == 'update'")["param"])


def test_clipping_on_some_steps_only_cannot_be_checked():
    torch.manual_seed(0)
    X, Y = torch.randn(32, 3), torch.randn(32, 1)
    model = nn.Linear(3, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with trace_torch(strict=True) as tr:
        for i in range(6):
            opt.zero_grad()
            nn.functional.mse_loss(model(X), Y).backward()
            if i % 2:
                clip_grad_norm_(model.parameters(), 1e-2)
            opt.step()
    report = tracer.check(tr.trace)
    assert report.verdict == "incomplete" and report.table["passed"].all(), report.summary()
    assert "grad_transform" not in tr.trace.meta
