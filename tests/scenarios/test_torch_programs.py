"""Issue 9, torch: real torch code under ``trace_torch`` becomes a step program the checker passes.

Each loop runs twice, traced and untraced, with the same seeds: the training must be
bit-identical, and the traced run must check with verdict ``passed`` and nothing
"cannot check" (the broadcast model passes every number and is named by its
diagnosis instead).
"""
import contextlib
import math

import numpy as np
import pytest
import torch
from torch import nn

import tracer
from hooks.torch import trace_torch

import _torch_scenarios as S


def traced():
    return trace_torch(strict=True)


def _passed(trace):
    report = tracer.check(trace)
    assert report.verdict == "passed" and not report.cannot_check, str(report)
    return report


def _same(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert torch.equal(x, y)


# ------------------------------------------------------------------ polynomial
def polynomial_autograd(ctx, steps=40):
    """PyTorch tutorial "Tensors and autograd": raw tensors a, b, c, d; set_default_device."""
    torch.manual_seed(0)
    with ctx() as tr:
        torch.set_default_device("cpu")
        try:
            x = torch.linspace(-math.pi, math.pi, 2000)
            y = torch.sin(x)
            a, b, c, d = (torch.randn((), requires_grad=True) for _ in range(4))
            for _ in range(steps):
                y_pred = a + b * x + c * x ** 2 + d * x ** 3
                loss = (y_pred - y).pow(2).sum()
                loss.backward()
                with torch.no_grad():
                    for p in (a, b, c, d):
                        p -= 1e-6 * p.grad
                        p.grad = None
        finally:
            torch.set_default_device(None)
    return tr, [a.detach(), b.detach(), c.detach(), d.detach()]


def polynomial_nn(ctx, steps=40, optimizer=None):
    """PyTorch tutorial "nn" (hand-written update) and "optim" (RMSprop) forms."""
    torch.manual_seed(0)
    x = torch.linspace(-math.pi, math.pi, 2000)
    y = torch.sin(x)
    p = torch.tensor([1, 2, 3])
    xx = x.unsqueeze(-1).pow(p)
    model = nn.Sequential(nn.Linear(3, 1), nn.Flatten(0, 1))
    loss_fn = nn.MSELoss(reduction="sum")
    opt = None if optimizer is None else optimizer(model.parameters())
    with ctx() as tr:
        for _ in range(steps):
            y_pred = model(xx)
            loss = loss_fn(y_pred, y)
            if opt is None:
                model.zero_grad()
                loss.backward()
                with torch.no_grad():
                    for param in model.parameters():
                        param -= 1e-6 * param.grad
            else:
                opt.zero_grad()
                loss.backward()
                opt.step()
    return tr, [q.detach().clone() for q in model.parameters()]


class Polynomial3(nn.Module):
    """PyTorch tutorial "Custom nn Modules"."""

    def __init__(self):
        super().__init__()
        self.a, self.b, self.c, self.d = (nn.Parameter(torch.randn(())) for _ in range(4))

    def forward(self, x):
        return self.a + self.b * x + self.c * x ** 2 + self.d * x ** 3


def polynomial_module(ctx, steps=40):
    torch.manual_seed(0)
    x = torch.linspace(-math.pi, math.pi, 2000)
    y = torch.sin(x)
    model = Polynomial3()
    criterion = nn.MSELoss(reduction="sum")
    opt = torch.optim.SGD(model.parameters(), lr=1e-6)
    with ctx() as tr:
        for _ in range(steps):
            loss = criterion(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
    return tr, [q.detach().clone() for q in model.parameters()]


@pytest.mark.parametrize("run", [polynomial_autograd, polynomial_nn, polynomial_module,
                                 lambda ctx: polynomial_nn(ctx, optimizer=lambda p: torch.optim.RMSprop(p, lr=1e-3))],
                         ids=["autograd_default_device", "nn", "module", "optim_rmsprop"])
def test_polynomial_fits_check(run):
    _, plain = run(contextlib.nullcontext)
    tr, out = run(traced)
    _same(plain, out)
    trace = tr.trace
    assert trace.n_steps == 40                          # one step per iteration (set_default_device too)
    a = trace.arrays()
    assert a.inputs.shape[0] == 2000                    # the full batch is stored once, not per step
    assert trace.meta["torch"]["data"] == "full"
    _passed(trace)


def test_polynomial_program_reads_like_the_code():
    tr, _ = polynomial_nn(traced, steps=3)
    prog = tr.trace.meta["program"]
    assert [(n["op"], n.get("label")) for n in prog["nodes"]] == [
        ("linear", "model.0 (Linear)"), ("flatten", "model.1 (Flatten)"), ("mse_loss", "loss_fn (MSELoss)")]
    assert prog["nodes"][1]["attrs"] == {"start": 0, "end": 1}
    assert prog["nodes"][2]["attrs"] == {"reduction": "sum"}
    assert prog["inputs"][0]["name"] == "xx" and prog["inputs"][0]["shape"] == [3]
    assert prog["outputs"] == {"loss": "loss", "prediction": "y_pred", "target": "y"}
    assert all(n["where"].startswith("test_torch_programs.py:") for n in prog["nodes"])


# ------------------------------------------------------------------------ MLP
def mlp(ctx, epochs=2):
    """An nn MLP mixing GELU (tanh approximation), SiLU, LeakyReLU and Tanh; AdamW; cross-entropy
    with label smoothing; a DataLoader with a short last batch."""
    torch.manual_seed(3)
    X = torch.randn(100, 6)
    Y = torch.randint(0, 4, (100,))
    model = nn.Sequential(nn.Linear(6, 8), nn.GELU(approximate="tanh"), nn.Linear(8, 8), nn.SiLU(),
                          nn.Linear(8, 8), nn.LeakyReLU(0.2), nn.Linear(8, 8), nn.Tanh(), nn.Linear(8, 4))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=0.1)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(X, Y), batch_size=32, shuffle=True)
    with ctx() as tr:
        for _ in range(epochs):
            for xb, yb in loader:
                opt.zero_grad()
                loss_fn(model(xb), yb).backward()
                opt.step()
    return tr, [q.detach().clone() for q in model.parameters()]


def test_mlp_with_gelu_silu_leaky_relu_tanh_adamw_label_smoothing():
    _, plain = mlp(contextlib.nullcontext)
    tr, out = mlp(traced)
    _same(plain, out)
    trace = tr.trace
    ops = [n["op"] for n in trace.meta["program"]["nodes"]]
    assert ops == ["linear", "gelu", "linear", "silu", "linear", "leaky_relu", "linear", "tanh", "linear",
                   "cross_entropy"]
    nodes = trace.meta["program"]["nodes"]
    assert nodes[1]["attrs"] == {"approximate": "tanh"} and nodes[5]["attrs"] == {"alpha": 0.2}
    assert nodes[-1]["attrs"]["label_smoothing"] == 0.1
    assert sorted(set(trace.steps["batch_size"])) == [4, 32]     # the short last batch is checked too
    report = _passed(trace)
    assert report.table[report.table["quantity"] == "prediction"]["passed"].all()


# ----------------------------------------------------------------- S4 and b1
def test_s4_regression_checks_the_gradient_of_the_scalar_b1():
    tr, _ = S.run_s4_regression(traced, num_examples=600, n_train=400, num_epochs=1)
    report = tracer.check(tr.trace)
    assert not report.cannot_check, str(report)
    grads = report.table[(report.table["quantity"] == "grad") & (report.table["param"] == "b1")]
    assert len(grads) == tr.trace.n_steps and grads["passed"].all()
    assert {f.kind for f in report.findings} == {"double_averaging"}     # the page's bug, named


# ------------------------------------------------------------- broadcasting
def test_predictions_n_by_1_against_targets_n_broadcast_as_torch_did():
    torch.manual_seed(0)
    X, Y = torch.randn(24, 3), torch.randn(24)              # targets (N,), predictions (N, 1)
    model = nn.Linear(3, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    with pytest.warns(UserWarning, match="broadcast"):
        with trace_torch(strict=True) as tr:
            for _ in range(4):
                opt.zero_grad()
                nn.functional.mse_loss(model(X), Y).backward()
                opt.step()
    report = tracer.check(tr.trace)
    assert not report.cannot_check and report.table["passed"].all(), str(report)
    (found,) = [f for f in report.findings if f.kind == "loss_broadcast"]
    assert "(24, 1)" in found.message and "(24,)" in found.message and "(24, 24)" in found.message


# ------------------------------------------------------------------ precisions
def _dtype_run(ctx, dtype, steps=6):
    torch.manual_seed(1)
    X = torch.randn(32, 4).to(dtype)
    Y = torch.randn(32, 1).to(dtype)
    model = nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 1)).to(dtype)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.5)
    with ctx() as tr:
        for _ in range(steps):
            opt.zero_grad()
            nn.functional.mse_loss(model(X), Y).backward()
            opt.step()
    return tr, [q.detach().clone() for q in model.parameters()]


@pytest.mark.parametrize("dtype", [torch.float16, torch.float64, torch.bfloat16], ids=str)
def test_half_double_and_bfloat16_runs_are_traced_and_checked(dtype):
    _, plain = _dtype_run(contextlib.nullcontext, dtype)
    tr, out = _dtype_run(traced, dtype)
    _same(plain, out)
    trace = tr.trace
    name = str(dtype).replace("torch.", "")
    assert {p["dtype"] for p in trace.meta["params"]} == {name}
    assert trace.n_steps == 6
    report = _passed(trace)
    assert report.context["precision"] == name
    if dtype == torch.bfloat16:                            # kept as float32 values (NumPy has no bfloat16)
        assert trace.arrays().params["0.weight"]["before"].dtype == np.float32


# ------------------------------------------------------------- column views
def test_column_views_of_the_batch_are_columns_of_the_data_table():
    """``y[:, :1]`` of a DataLoader batch, and ``D[a:b, :3]`` / ``D[a:b, 4]`` of one data tensor."""
    torch.manual_seed(0)
    X, Y = torch.randn(40, 6), torch.randn(40, 2)
    model = nn.Linear(6, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(X, Y), batch_size=16, shuffle=True)
    with trace_torch(strict=True) as tr:
        for xb, yb in loader:
            opt.zero_grad()
            nn.functional.mse_loss(model(xb), yb[:, 1:]).backward()
            opt.step()
    assert tr.trace.meta["program"]["inputs"][1]["columns"] == [1, 2]
    _passed(tr.trace)
    D = torch.randn(50, 5)
    head = nn.Linear(3, 1)
    opt = torch.optim.SGD(head.parameters(), lr=0.1)
    with trace_torch(strict=True) as tr:
        for i in range(0, 50, 10):
            opt.zero_grad()
            nn.functional.mse_loss(head(D[i:i + 10, :3]).squeeze(1), D[i:i + 10, 4]).backward()
            opt.step()
    trace = tr.trace
    assert trace.meta["torch"]["data"] == "sliced"
    assert [i["columns"] for i in trace.meta["program"]["inputs"]] == [[0, 3], [4, 5]]
    assert trace.arrays().sample_row.tolist() == list(range(50))
    _passed(trace)


def test_column_views_of_indexed_batches_keep_their_columns():
    """``X[idx].view(-1, 2, 3)[:, k]``: each half of a shuffled ``X[idx]`` batch is its own column
    range of X (not X's first columns), and later steps' rows are found again from those
    columns. Before the fix both halves read columns 0..3 and no step was checked."""
    torch.manual_seed(0)
    X = torch.randn(48, 6)
    y = X[:, :3].sum(dim=1, keepdim=True) - X[:, 3:].mean(dim=1, keepdim=True)
    a, b = nn.Linear(3, 2), nn.Linear(3, 2)
    params = list(a.parameters()) + list(b.parameters())
    opt = torch.optim.SGD(params, lr=0.05)
    with trace_torch(strict=True) as tr:
        for _ in range(2):
            perm = torch.randperm(48)
            for i in range(0, 48, 12):
                xb = X[perm[i:i + 12]].view(-1, 2, 3)
                opt.zero_grad()
                out = a(xb[:, 0, :]).sum(1, keepdim=True) - b(xb[:, 1, :]).sum(1, keepdim=True)
                nn.functional.mse_loss(out, y[perm[i:i + 12]]).backward()
                opt.step()
    trace = tr.trace
    assert trace.meta["torch"]["data"] == "matched"
    assert [i["columns"] for i in trace.meta["program"]["inputs"] if i["source"] == "inputs"] == [[0, 3], [3, 6]]
    report = _passed(trace)
    grads = report.table[report.table.quantity == "grad"]
    assert sorted(set(grads.step)) == list(range(1, 9)) and grads.passed.all()


def test_a_dataloader_batch_with_more_than_inputs_and_targets():
    """``TensorDataset(X, labels, soft, weight)``: every tensor after the first is laid out
    side by side in the targets table, so a loss reading class indices, probability targets
    (cross-entropy with label smoothing on one, soft targets on the other) and per-row
    weights is checked (it was "cannot check: a DataLoader batch with more than (inputs,
    targets)"). Each input reads its own columns: pointed at the labels' column instead of
    the weights', the same trace fails its loss."""
    torch.manual_seed(0)
    labels = torch.randint(0, 3, (48,))
    X = torch.randn(48, 4) + nn.functional.one_hot(labels, 4).float()
    soft = nn.functional.one_hot(labels, 3).float() * 0.7 + 0.1
    weight = torch.rand(48) + 0.5
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(X, labels, soft, weight),
                                         batch_size=16, shuffle=True)
    model = nn.Linear(4, 3)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    with trace_torch(strict=True) as tr:
        for _ in range(2):
            for xb, yb, pb, wb in loader:
                opt.zero_grad()
                z = model(xb)
                per_row = nn.functional.cross_entropy(z, pb, reduction="none") * wb
                loss = per_row.mean() + nn.functional.cross_entropy(z, yb, label_smoothing=0.1)
                loss.backward()
                opt.step()
    trace = tr.trace
    inputs = trace.meta["program"]["inputs"]
    assert sorted((i["source"], i["columns"]) for i in inputs) == [
        ("inputs", [0, 4]), ("targets", [0, 1]), ("targets", [1, 4]), ("targets", [4, 5])], inputs
    _passed(trace)
    for i in inputs:
        if i["columns"] == [4, 5]:
            i["columns"] = [0, 1]          # the weights read from the labels' column
    wrong = tracer.check(trace)
    assert wrong.verdict == "failed"
    assert not wrong.table[wrong.table.quantity == "loss"].passed.astype(bool).any()


def _groups_run(make_opt, bug=False):
    torch.manual_seed(0)
    X = torch.randn(40, 3)
    y = X @ torch.tensor([[1.0], [2.0], [-1.0]]) + 0.5
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 1))
    opt = make_opt(model)
    with trace_torch(strict=True) as tr:
        for i in range(0, 40, 10):
            opt.zero_grad()
            nn.functional.mse_loss(model(X[i:i + 10]), y[i:i + 10]).backward()
            opt.step()
            if bug:
                with torch.no_grad():
                    model[2].bias.add_(0.01)
    return tracer.check(tr.trace)


def test_param_groups_with_their_own_lr_and_unmodelled_optimizers_are_cannot_check():
    """Fine-tuning's ``SGD([{"params": base}, {"params": head, "lr": 0.01}], lr=0.05)`` FAILED
    the base's updates (checked at the head's lr: "actual = 5 x expected"), and an optimizer
    without a formula (NAdam) FAILED as "SGD with lr 0.0017". Now the other group's updates
    and the unmodelled optimizer are "cannot check", named; the first group is still checked."""
    def groups(model):
        return torch.optim.SGD([{"params": model[2].parameters()},
                                {"params": model[0].parameters(), "lr": 0.01, "weight_decay": 1e-3}],
                               lr=0.05, momentum=0.9)
    report = _groups_run(groups)
    assert report.verdict == "incomplete" and not report.findings, str(report)
    text = " ".join(report.cannot_check)
    assert "update of 0.weight" in text and "update of 0.bias" in text and "lr 0.01" in text, text
    head = report.table[(report.table.quantity == "update") & report.table.param.isin(["2.weight", "2.bias"])]
    assert len(head) == 8 and head.passed.astype(bool).all()
    assert _groups_run(groups, bug=True).verdict == "failed"          # a write to the checked group: caught
    same = _groups_run(lambda m: torch.optim.SGD([{"params": m[2].parameters()}, {"params": m[0].parameters()}],
                                                 lr=0.05))
    assert same.verdict == "passed", str(same)                        # groups that agree: all checked
    def no_decay_for_biases(m):      # the first recorded tensor (a bias) is in the second group
        named = list(m.named_parameters())
        return torch.optim.AdamW([{"params": [p for n, p in named if n.endswith("weight")], "weight_decay": 0.01},
                                  {"params": [p for n, p in named if n.endswith("bias")], "weight_decay": 0.0}],
                                 lr=0.01)
    wd = _groups_run(no_decay_for_biases)
    assert wd.verdict == "incomplete" and not wd.findings, str(wd)
    assert {c.split(":")[0] for c in wd.cannot_check} == {"update of 0.weight", "update of 2.weight"}, wd.cannot_check
    nadam = _groups_run(lambda m: torch.optim.NAdam(m.parameters(), lr=0.01))
    assert nadam.verdict == "incomplete" and not nadam.findings, str(nadam)
    assert any("optimizer torch/nadam" in c for c in nadam.cannot_check), nadam.cannot_check
