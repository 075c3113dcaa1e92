"""Lambdified code runs against tracer.program.numpy_names: the objects sympy's "numpy"
module gives, got without its ``from numpy import *`` (which loads f2py, testing and NumPy's
other lazy submodules: about 50 ms of a process's first check). Same source, same functions."""
import importlib
import inspect
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import sympy as sp

import tracer
import tracer.math.activations as activations
import tracer.math.losses as losses
import tracer.math.metrics as metrics
import tracer.math.optimizer_rule as optimizer_rule
from tracer.program import symbolic
from tracer.program.numpy_names import NUMPY, numpy_lambdify


def test_the_namespace_holds_sympys_objects_for_every_name_it_has():
    ref = importlib.import_module("sympy.utilities.lambdify")._get_namespace("numpy")
    assert set(NUMPY) <= set(ref) and all(NUMPY[k] is ref[k] for k in NUMPY)
    assert all(inspect.ismodule(ref[k]) for k in set(ref) - set(NUMPY))    # only submodules not loaded
    assert symbolic._MODULES[1] is NUMPY


@pytest.fixture
def compiled(monkeypatch):
    """Every (args, expr, function) the math modules lambdify while the test runs."""
    seen = []

    def recording(args, expr):
        fn = numpy_lambdify(args, expr)
        seen.append((args, expr, fn))
        return fn
    for module in (activations, losses, metrics, optimizer_rule):
        monkeypatch.setattr(module, "numpy_lambdify", recording)
    return seen


def _torch_trace(opt):
    torch = pytest.importorskip("torch")
    from hooks.torch import trace_torch
    torch.manual_seed(0)
    X, Y = torch.randn(32, 5), torch.randint(0, 3, (32,))
    model = torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3))
    optimizer = opt(model.parameters())
    with trace_torch() as tr:
        for i in range(4):
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(model(X[8 * i:8 * i + 8]), Y[8 * i:8 * i + 8]).backward()
            optimizer.step()
    return tr.trace


def test_the_math_modules_compile_sympys_source_against_sympys_functions(compiled):
    torch = pytest.importorskip("torch")
    for name in activations._REGISTRY:
        act = activations.get_activation(name)
        act.__dict__.pop("_f", None), act.__dict__.pop("_df", None)
        act._f, act._df
    for opt in (lambda p: torch.optim.Adam(p, lr=0.01), lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9)):
        assert tracer.check(_torch_trace(opt)).verdict == "passed"
    assert len(compiled) > 10
    for args, expr, fn in compiled:
        want = sp.lambdify(args, expr, "numpy")
        assert inspect.getsource(fn) == inspect.getsource(want)
        names = set(fn.__code__.co_names) & set(want.__globals__)
        assert all(fn.__globals__[k] is want.__globals__[k] for k in names), expr


def test_a_check_does_not_load_numpys_lazy_submodules():
    code = textwrap.dedent("""
        import sys
        import numpy as np
        import tracer
        from hooks.numpy import NumpyTracer
        x = np.linspace(0, 1, 20)[:, None]; t = 13 * x + 2
        w, b = np.zeros((1, 1)), np.zeros(1)
        tr = NumpyTracer(params=["w", "b"], predictions="out", loss="loss", inputs=x, targets=t, lr=0.1)
        for _ in tr.range(3):
            out = x @ w + b
            loss = ((out - t) ** 2).mean()
            g = 2 * (out - t) / len(x)
            w -= 0.1 * (x.T @ g); b -= 0.1 * g.sum(0)
        report = tracer.check(tr.trace)
        print(report.verdict, "numpy.f2py" in sys.modules, "numpy.testing" in sys.modules)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["passed", "False", "False"], out
