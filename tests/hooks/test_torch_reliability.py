"""Issue 11, torch: tracing never breaks the user's program, and never changes its numbers.

A corpus of small training functions that do what real scripts do around a training
loop - init functions (``orthogonal_`` crashed 0.1.0 inside its function mode), in-place
ops on views, ``no_grad`` and ``inference_mode`` blocks, float16, bfloat16, float64,
a run that diverges to inf - each run traced and untraced: no exception, final weights
bit-identical. And a failure inside the hook itself stops tracing with one warning
while the script goes on unchanged.
"""
import contextlib
import math
import warnings

import pytest
import torch
from torch import nn

import tracer
from hooks.torch import trace_torch
from hooks.torch import capture as tcapture


def _net(dtype=torch.float32):
    return nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 1)).to(dtype)


def init_functions(ctx):
    """Init functions run inside the block, while the forward pass is being watched."""
    torch.manual_seed(0)
    with ctx():
        model = _net()
        nn.init.orthogonal_(model[0].weight)
        nn.init.kaiming_uniform_(model[2].weight, a=math.sqrt(5))
        nn.init.xavier_normal_(model[0].weight)
        nn.init.trunc_normal_(model[2].weight, std=0.02)
        nn.init.zeros_(model[0].bias)
        opt = torch.optim.SGD(model.parameters(), lr=0.05)
        X, Y = torch.randn(16, 6), torch.randn(16, 1)
        for _ in range(4):
            opt.zero_grad()
            nn.functional.mse_loss(model(X), Y).backward()
            opt.step()
    return list(model.parameters())


def views_in_place(ctx):
    """In-place ops on views: a parameter row scaled through a view under no_grad, a view
    made under no_grad whose base changes, an in-place op on an activation in grad mode."""
    torch.manual_seed(1)
    w = torch.randn(6, 3, requires_grad=True)
    X, Y = torch.randn(10, 6), torch.randn(10, 3)
    with torch.no_grad():
        row = w[0]                          # a view made under no_grad
    with ctx():
        for _ in range(4):
            h = X @ w
            h[:, 0] *= 2.0                  # in place on a view of an activation, grad on
            loss = ((h - Y) ** 2).mean()
            loss.backward()
            with torch.no_grad():
                w -= 0.1 * w.grad
                w.grad.zero_()
                w.data[1].mul_(0.5)         # in place on a view of .data
                row.add_(0.01)              # its base changes through the old view
    return [w]


def no_grad_and_inference(ctx):
    """Evaluation inside the loop under no_grad and inference_mode."""
    torch.manual_seed(2)
    model = _net()
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    X, Y = torch.randn(20, 6), torch.randn(20, 1)
    seen = []
    with ctx():
        for _ in range(4):
            opt.zero_grad()
            nn.functional.l1_loss(model(X), Y).backward()
            opt.step()
            with torch.no_grad():
                seen.append(model(X).sum())
            with torch.inference_mode():
                seen.append(model(X).mean())
    return list(model.parameters()) + seen


def precisions(ctx):
    """float16, bfloat16 and float64 models trained one after another."""
    out = []
    for i, dtype in enumerate((torch.float16, torch.bfloat16, torch.float64)):
        torch.manual_seed(3 + i)
        model = _net(dtype)
        opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
        X, Y = torch.randn(12, 6).to(dtype), torch.randn(12, 1).to(dtype)
        with ctx():
            for _ in range(3):
                opt.zero_grad()
                nn.functional.mse_loss(model(X), Y).backward()
                opt.step()
        out += list(model.parameters())
    return out


def diverging(ctx):
    """A loop that overflows to inf and NaN (the hook's arithmetic must not warn)."""
    torch.manual_seed(4)
    w = torch.randn(3, 1, requires_grad=True)
    X, Y = torch.randn(50, 3) * 100, torch.randn(50, 1)
    with ctx():
        for _ in range(12):
            loss = ((X @ w - Y) ** 2).sum()
            loss.backward()
            with torch.no_grad():
                w -= 10.0 * w.grad
                w.grad = None
    return [w]


CORPUS = [init_functions, views_in_place, no_grad_and_inference, precisions, diverging]


@pytest.mark.parametrize("script", CORPUS, ids=[f.__name__ for f in CORPUS])
def test_traced_and_untraced_runs_are_bit_identical(script):
    plain = script(contextlib.nullcontext)
    with warnings.catch_warnings():
        warnings.simplefilter("error")              # nothing from the hook reaches the user
        warnings.filterwarnings("ignore", category=UserWarning, module="torch")
        traced = script(trace_torch)
    assert len(plain) == len(traced)
    for a, b in zip(plain, traced):
        assert torch.equal(a.detach(), b.detach()) or (torch.isnan(a).all() and torch.isnan(b).all())


def test_a_failure_while_watching_the_forward_pass_warns_once_and_changes_nothing(monkeypatch):
    plain = init_functions(contextlib.nullcontext)

    def boom(self, *args):
        raise RuntimeError("planted")
    monkeypatch.setattr(tcapture.Capture, "_note", boom)
    with pytest.warns(RuntimeWarning, match="watching the forward pass failed.*planted") as got:
        tr = trace_torch()
        traced = init_functions(lambda: tr)
    assert sum("planted" in str(w.message) for w in got) == 1
    assert all(torch.equal(a, b) for a, b in zip(plain, traced))
    trace = tr.trace
    assert trace.n_steps == 4                                   # steps are still recorded
    report = tracer.check(trace)
    assert any("planted" in c for c in report.cannot_check)     # ... and not checked


def test_a_failure_in_the_step_machinery_stops_tracing_with_one_warning(monkeypatch):
    import hooks.torch.build as tbuild
    plain = no_grad_and_inference(contextlib.nullcontext)

    def boom(*args, **kwargs):
        raise RuntimeError("planted")
    monkeypatch.setattr(tbuild, "classify", boom)
    with pytest.warns(RuntimeWarning, match="tracing stopped.*planted"):
        tr = trace_torch()
        traced = no_grad_and_inference(lambda: tr)
    assert all(torch.equal(a, b) for a, b in zip(plain, traced))
    assert torch.overrides._get_current_function_mode() is None


def _broadcast_loop(ctx, n):
    torch.manual_seed(5)
    X, Y = torch.randn(n, 3), torch.randn(n)
    model = nn.Linear(3, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    with ctx():
        for _ in range(3):
            opt.zero_grad()
            nn.functional.mse_loss(model(X), Y).backward()     # torch warns about broadcasting
            opt.step()


def test_a_warning_raised_while_watching_keeps_its_location_and_shows_once():
    shown = {}
    for name, ctx, n in (("plain", contextlib.nullcontext, 17), ("traced", trace_torch, 19)):
        with warnings.catch_warnings(record=True) as got:
            warnings.simplefilter("default")
            _broadcast_loop(ctx, n)
        shown[name] = [(w.filename, w.lineno) for w in got if "target size" in str(w.message)]
    assert len(shown["plain"]) == len(shown["traced"]) == 1
    assert shown["plain"] == shown["traced"]               # torch's own line, not steptrace's
