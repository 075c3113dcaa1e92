"""Issue 10 item 1, torch side: a parameter changed between two steps is named with the line.

A write after ``optimizer.step()`` - a leftover hand update (``.data -= ...`` or under
``no_grad``), a hand decay through ``.data``, a clamp, a re-initialisation by
``nn.init`` or ``reset_parameters()`` - is caught at the right step with the parameter,
the size of the change next to the step's update and the user's source line; the
clean twin has no finding. Tracing never changes the numbers.
"""
import contextlib

import pytest
import torch
from torch import nn

import tracer
from hooks.torch import trace_torch


def _extra(kind, model, i):
    if kind == "data":
        model.weight.data -= 0.01 * model.weight.grad                      # LINE data
    elif kind == "no_grad":
        with torch.no_grad():
            model.weight -= 0.01 * model.weight.grad                        # LINE no_grad
    elif kind == "data_mul":
        model.weight.data.mul_(0.99)                                        # LINE data_mul
    elif kind == "clamp":
        with torch.no_grad():
            model.weight.clamp_(-0.1, 0.1)                                  # LINE clamp
    elif kind == "init" and i == 4:
        nn.init.normal_(model.weight)                                       # LINE init
    elif kind == "reset" and i == 4:
        model.reset_parameters()                                            # LINE reset


def _run(kind, traced=True):
    torch.manual_seed(0)
    X = torch.randn(64, 5)
    Y = X @ torch.randn(5, 1)
    model = nn.Linear(5, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    with (trace_torch(strict=True) if traced else contextlib.nullcontext()) as tr:
        for i in range(8):
            opt.zero_grad()
            nn.functional.mse_loss(model(X), Y).backward()
            opt.step()
            _extra(kind, model, i)
    return tr, [p.detach().clone() for p in model.parameters()]


def _line(kind):
    text = open(__file__).read().splitlines()
    return next(n for n, line in enumerate(text, 1) if line.endswith(f"# LINE {kind}"))


@pytest.mark.parametrize("kind,step", [("data", 2), ("no_grad", 2), ("data_mul", 2), ("clamp", 2), ("init", 6),
                                       ("reset", 6)])
def test_a_write_between_steps_is_named_with_step_param_size_and_line(kind, step):
    tr, values = _run(kind)
    _, plain = _run(kind, traced=False)
    assert all(torch.equal(a, b) for a, b in zip(values, plain))
    report = tracer.check(tr.trace)
    found = [f for f in report.findings if f.kind == "continuity" and f.param == "weight"]
    assert len(found) == 1, report.summary()
    f = found[0]
    assert f.failed and f.step == step
    assert "x the norm of that step's update" in f.message and "a change of" in f.message
    where = f"test_torch_continuity.py:{_line(kind)}"
    assert where in f.message and where in f.fix, f.message
    assert f"after step {step - 1}" in f.message
    assert report.verdict == "failed"


def test_clean_twin_has_no_finding_and_no_between_step_writes():
    tr, _ = _run("none")
    assert "between_steps" not in tr.trace.meta["torch"]
    report = tracer.check(tr.trace)
    assert report.ok and not report.findings, report.summary()
