"""A DataLoader batch preprocessed inside the step (``xb.view(-1, 64) / 255``,
``(xb - mean) / std``, ``F.one_hot(yb, 3).float()``, ``yb.unsqueeze(1).float()``) is recomputed
by the program from the recorded raw rows: the capture records untracked calls on the loader's
batch as *derived* records (:meth:`hooks.torch.capture.Capture.seed`), which the builder takes in
only when a batch tensor is not in the loader's batch as it is. Planted faults are caught with
the preprocessing in place; an operation outside the registry is named at the user's line."""
import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

import tracer
from hooks.torch import trace_torch


def _data(n=48, feat=16, classes=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    X = torch.randint(0, 256, (n, feat), generator=g).float()
    y = torch.randint(0, classes, (n,), generator=g)
    return X, y


PREP = {
    "view_div255": (lambda xb: xb.view(-1, 4, 4).view(-1, 16) / 255, lambda yb: yb, nn.CrossEntropyLoss()),
    "normalise": (lambda xb: (xb - 127.5) / 73.9, lambda yb: yb, nn.CrossEntropyLoss()),
    "one_hot_mse": (lambda xb: xb / 255, lambda yb: F.one_hot(yb, 3).float(), nn.MSELoss()),
    "unsqueeze_float_target": (lambda xb: xb.float() * (1 / 255), lambda yb: yb.unsqueeze(1).float() / 2,
                               nn.MSELoss()),
}


def _run(prep, target, loss_fn, traced=True, bug=None, out=3):
    torch.manual_seed(0)
    X, y = _data()
    model = nn.Sequential(nn.Linear(16, 6), nn.Tanh(), nn.Linear(6, out))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    loader = DataLoader(TensorDataset(X, y), batch_size=12, shuffle=True)
    tr = trace_torch(strict=True) if traced else None
    losses = []
    if tr is not None:
        tr.__enter__()
    try:
        for _ in range(2):
            for xb, yb in loader:
                opt.zero_grad()
                loss = loss_fn(model(prep(xb)), target(yb))
                loss.backward()
                opt.step()
                if bug == "bias_twice":
                    with torch.no_grad():
                        model[2].bias -= 0.1 * model[2].bias.grad
                losses.append(loss.item())
    finally:
        if tr is not None:
            tr.__exit__(None, None, None)
    return tr, losses, [p.detach().clone() for p in model.parameters()]


@pytest.mark.parametrize("case", sorted(PREP))
def test_preprocessed_batch_is_checked(case):
    prep, target, loss_fn = PREP[case]
    out = 1 if case == "unsqueeze_float_target" else 3
    tr, losses, params = _run(prep, target, loss_fn, out=out)
    _, losses0, params0 = _run(prep, target, loss_fn, traced=False, out=out)
    assert losses == losses0 and all(torch.equal(a, b) for a, b in zip(params, params0))   # bit-identical
    report = tracer.check(tr.trace)
    assert report.verdict == "passed" and not report.cannot_check, str(report)
    assert len(tr.trace.steps) == 8
    nodes = tr.trace.meta["program"]["nodes"]
    assert any(n["where"] and "test_torch_preprocess.py" in n["where"] and n["op"] in ("div", "mul", "one_hot")
               for n in nodes), nodes
    # the data table holds the raw rows: the program recomputes the scaling from them
    x_cols = [c for c in tr.trace.data.columns if c.startswith("x")]
    assert float(tr.trace.data[x_cols].to_numpy().max()) > 1.0


def test_batch_used_as_it_is_keeps_its_program():
    """No preprocessing: the derived records are not taken in (the program has no extra node)."""
    tr, _, _ = _run(lambda xb: xb, lambda yb: yb, nn.CrossEntropyLoss())
    ops = [n["op"] for n in tr.trace.meta["program"]["nodes"]]
    assert ops[0] == "linear" and "div" not in ops, ops
    assert tracer.check(tr.trace).verdict == "passed"


def test_planted_fault_after_preprocessing_is_caught():
    prep, target, loss_fn = PREP["view_div255"]
    tr, _, _ = _run(prep, target, loss_fn, bug="bias_twice")
    report = tracer.check(tr.trace)
    assert report.verdict == "failed", str(report)
    assert "2.bias" in str(report)


def test_preprocessing_outside_the_registry_is_named():
    """``torch.cumsum`` on the batch is not a registry op: "cannot check" at its line, never a pass."""
    tr, _, _ = _run(lambda xb: torch.cumsum(xb, dim=1) / 4096, lambda yb: yb, nn.CrossEntropyLoss())
    report = tracer.check(tr.trace)
    assert report.verdict == "incomplete", str(report)
    assert any("cumsum" in c and "test_torch_preprocess.py:" in c for c in report.cannot_check), report.cannot_check


def test_capture_records_calls_on_the_seeded_batch():
    """Only untracked calls that read the seeded batch (or what was computed from it) and
    return a new tensor become derived records; ``clear`` (each arming) forgets the seeds."""
    from hooks.torch.capture import Capture
    cap = Capture()
    x = torch.ones(4, 2)
    cap.seed([x, torch.zeros(4)])
    assert id(x) in cap.seeds
    cap.clear()
    assert cap.seeds == {}
    cap.arm()
    try:
        cap.seed([x])
        y = x / 2                      # untracked, on the batch: a derived record
        z = torch.ones(3) * 2          # untracked, not the batch: nothing
        w = x.contiguous()             # returns the batch itself: nothing
    finally:
        cap.disarm()
    recs = cap.take()
    assert [(r.name, r.derived) for r in recs] == [("div", True)]
    assert recs[0].out is y and z is not None and w is x
    assert np.array_equal(recs[0].out.numpy(), np.full((4, 2), 0.5))


def _no_loader(cut, n=48, bs=12):
    """A loop without a DataLoader: ``cut(X, y, perm, i)`` gives the step's (inputs, targets)."""
    torch.manual_seed(0)
    X, y = _data(n)
    model = nn.Sequential(nn.Linear(16, 6), nn.Tanh(), nn.Linear(6, 3))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with trace_torch(strict=True) as tr:
        for _ in range(2):
            perm = torch.randperm(n)
            for i in range(0, n, bs):
                xb, yb = cut(X, y, perm, i)
                loss = F.cross_entropy(model(xb), yb)
                opt.zero_grad()
                loss.backward()
                opt.step()
    return tracer.check(tr.trace)


def test_sliced_batch_preprocessed_in_the_step_is_checked():
    """``x_train[i:i + bs].view(-1, 16) / 255`` (the "torch.nn really" tutorial's cut, then scaled)."""
    report = _no_loader(lambda X, y, perm, i: (X[i:i + 12].view(-1, 16) / 255, y[i:i + 12]))
    assert report.verdict == "passed" and not report.cannot_check, str(report)


def test_indexed_batch_preprocessed_stays_cannot_check():
    """``X[idx] / 255``: the rows would be found by the targets' values alone - refused, never FAILED."""
    report = _no_loader(lambda X, y, perm, i: (X[perm[i:i + 12]] / 255, y[perm[i:i + 12]]))
    assert report.verdict == "incomplete", str(report)
    assert any("different rows" in c for c in report.cannot_check), report.cannot_check
