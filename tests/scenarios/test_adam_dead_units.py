"""A correct Adam run with dead ReLU units checks clean (a false alarm that was real).

Why: a unit whose gradient has been exactly 0 since the start has Adam state ``v = 0``;
the rounding magnitude of ``sqrt(v)`` was ``inf * 0 = NaN`` there, and when the cheap
first comparison of a batch of steps was not conclusive the update check read
``expected 0, got 0`` as a failure. Found by ``bench/peak_rss_run.py`` (its script, 30
steps). The planted twin: the same run whose recorded update of one step is nudged by
one part in 10^4 must still fail.
"""
import numpy as np
import pytest

torch = pytest.importorskip("torch")

import tracer  # noqa: E402
from hooks.torch import trace_torch  # noqa: E402


def _run(steps=30):
    torch.manual_seed(0)
    X = torch.randn(2000, 128)
    y = X[:, :1] * 3 - X[:, 1:2] + 0.1 * torch.randn(2000, 1)
    model = torch.nn.Sequential(torch.nn.Linear(128, 256), torch.nn.ReLU(), torch.nn.Linear(256, 256),
                                torch.nn.ReLU(), torch.nn.Linear(256, 1))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(X, y), batch_size=32, shuffle=True)
    with trace_torch() as t:
        done = 0
        for xb, yb in loader:
            opt.zero_grad()
            loss = torch.nn.functional.mse_loss(model(xb), yb)
            loss.backward()
            opt.step()
            done += 1
            if done == steps:
                break
    return t.trace


def test_adam_with_dead_units_passes_and_a_nudged_update_fails():
    trace = _run()
    always_zero = {n: int((p.grad == 0).all(axis=0).sum()) for n, p in trace.arrays().params.items()}
    assert sum(always_zero.values()) > 0, always_zero          # elements whose gradient was always 0
    report = tracer.check(trace)
    assert report.verdict == "passed", report.summary()
    p = trace.arrays().params["2.weight"]
    after = np.array(p.after[10], copy=True)
    p.after[10] = after + (after - p.before[10]) * 1e-4 + np.abs(after) * 1e-4   # one step nudged
    assert tracer.check(trace).verdict == "failed"
