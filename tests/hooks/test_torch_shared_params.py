"""Issue 10 item 6, torch side: a tensor reached twice by the optimizers of one loop is named.

Planted: a parameter listed twice in one optimizer (torch only warns; SGD applies the
update twice, Adam's step counter runs at 2t), two optimizers sharing a tensor and
stepped in the same iteration, one optimizer stepped twice per backward. Each is
named with the parameter, the two places and the consequence. Clean twins: one
optimizer over ``model.parameters()``; two optimizers over disjoint parts of the model
(their second optimizer's updates are "cannot check", never a false alarm).
"""
import contextlib
import warnings

import pytest
import torch
from torch import nn

import tracer
from hooks.torch import trace_torch


def _optimizers(kind, model):
    w = model[0].weight
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")      # torch warns about a parameter listed twice
        return {
            "clean": lambda: [torch.optim.Adam(model.parameters(), lr=0.01)],
            "listed_twice_sgd": lambda: [torch.optim.SGD(list(model.parameters()) + [w], lr=0.01)],
            "listed_twice_adam": lambda: [torch.optim.Adam(list(model.parameters()) + [w], lr=0.01)],
            "two_optimizers": lambda: [torch.optim.SGD(model.parameters(), lr=0.01),
                                       torch.optim.Adam(model[2].parameters(), lr=0.01)],
            "disjoint": lambda: [torch.optim.SGD(model[0].parameters(), lr=0.01),
                                 torch.optim.Adam(model[2].parameters(), lr=0.01)],
        }[kind]()


def _run(kind, traced=True, twice=False):
    torch.manual_seed(0)
    X = torch.randn(64, 5)
    Y = X @ torch.randn(5, 1)
    model = nn.Sequential(nn.Linear(5, 4), nn.Tanh(), nn.Linear(4, 1))
    opts = _optimizers(kind, model)
    with (trace_torch(strict=True) if traced else contextlib.nullcontext()) as tr:
        for _ in range(6):
            for o in opts:
                o.zero_grad()
            nn.functional.mse_loss(model(X), Y).backward()
            for o in opts:
                o.step()
                if twice:
                    o.step()
    return tr, [p.detach().clone() for p in model.parameters()]


def _check(kind, twice=False):
    tr, values = _run(kind, twice=twice)
    _, plain = _run(kind, traced=False, twice=twice)
    assert all(torch.equal(a, b) for a, b in zip(values, plain))           # bit-identical
    assert len(tr.traces) == 1
    return tr.trace, tracer.check(tr.trace)


@pytest.mark.parametrize("kind,cls", [("listed_twice_sgd", "SGD"), ("listed_twice_adam", "Adam")])
def test_a_parameter_listed_twice_in_one_optimizer(kind, cls):
    trace, report = _check(kind)
    (f,) = [f for f in report.findings if f.kind == "shared_param"]
    assert f.failed and f.param == "0.weight" and f.step == 1
    assert f"{cls} param_groups[0]['params'][0]" in f.message and "['params'][4]" in f.message
    assert "applied 2 times per step" in f.message and f.fix
    assert ("step counter for it runs at 2t" in f.message) == (cls == "Adam")
    assert report.verdict == "failed"


def test_two_optimizers_sharing_a_tensor():
    trace, report = _check("two_optimizers")
    found = {f.param: f for f in report.findings if f.kind == "shared_param"}
    assert set(found) == {"2.weight", "2.bias"}
    f = found["2.weight"]
    assert "SGD.step() at test_torch_shared_params.py:" in f.message and "Adam.step() at" in f.message
    assert "both optimizers" in f.message and f.step == 1
    assert report.verdict == "failed"
    assert not [f for f in report.findings if f.kind in ("continuity", "never_updated")]


def test_one_optimizer_stepped_twice_per_backward():
    _, report = _check("clean", twice=True)
    params = {f.param for f in report.findings if f.kind == "shared_param"}
    assert params == {"0.weight", "0.bias", "2.weight", "2.bias"}
    assert report.verdict == "failed"


def test_clean_twin_has_no_finding():
    trace, report = _check("clean")
    assert "shared_params" not in trace.meta
    assert report.ok and not report.findings, report.summary()


def test_two_optimizers_on_disjoint_parts_raise_no_false_alarm():
    trace, report = _check("disjoint")
    assert "shared_params" not in trace.meta
    assert set(trace.meta["torch"]["late_update"]) == {"2.weight", "2.bias"}
    assert not report.findings, report.summary()
    assert report.table["passed"].all()
    assert report.verdict == "incomplete"
    assert any("2.weight" in c and "second optimizer" in c for c in report.cannot_check)
