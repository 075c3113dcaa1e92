"""trace_torch mechanics: torch losses and optimizers end to end, summary capture,
sampling, naming, restoring every patch, and clear errors for bad arguments."""
import contextlib

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.optim.optimizer as optim_module
from torch.utils.data import DataLoader, TensorDataset
from torch.utils.data import dataloader as dl

import tracer
from hooks.torch import trace_torch
from tracer.errors import TraceInputError


def _train(opt_fn, loss_fn, final=None, y_kind="reg", ctx=None, epochs=3, out=2):
    torch.manual_seed(0)
    X = torch.randn(40, 3)
    if y_kind == "reg":
        Y = torch.randn(40, out)
    elif y_kind == "bin":
        Y = (torch.rand(40, out) > 0.5).float()
    else:
        Y = torch.randint(0, out, (40,))
    model = nn.Sequential(*([nn.Linear(3, 5), nn.Tanh(), nn.Linear(5, out)] + ([final] if final else [])))
    opt = opt_fn(model.parameters())
    loader = DataLoader(TensorDataset(X, Y), batch_size=8, shuffle=True)
    with (ctx() if ctx else contextlib.nullcontext()) as tr:
        for epoch in range(epochs):
            for xb, yb in loader:
                opt.zero_grad()
                loss = loss_fn(model(xb), yb)
                loss.backward()
                opt.step()
    return tr, [p.detach().clone() for p in model.parameters()], model, opt, loader


CASES = {
    "sgd_nesterov_mse": (lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01),
                         nn.MSELoss(), None, "reg", "mse_loss", ["momentum_buffer"]),
    "rmsprop_centered_l1": (lambda p: torch.optim.RMSprop(p, lr=0.01, momentum=0.5, centered=True),
                            nn.L1Loss(), None, "reg", "l1_loss", ["square_avg", "momentum_buffer", "grad_avg"]),
    "adam_amsgrad_bce": (lambda p: torch.optim.Adam(p, lr=0.01, amsgrad=True), nn.BCELoss(), nn.Sigmoid(),
                         "bin", "binary_cross_entropy", ["exp_avg", "exp_avg_sq", "max_exp_avg_sq"]),
    "adamw_bce_logits": (lambda p: torch.optim.AdamW(p, lr=0.01), nn.BCEWithLogitsLoss(), None, "bin",
                         "binary_cross_entropy_with_logits", ["exp_avg", "exp_avg_sq"]),
    "adagrad_cross_entropy": (lambda p: torch.optim.Adagrad(p, lr=0.1), nn.CrossEntropyLoss(), None, "cls",
                              "cross_entropy", ["sum"]),
    "sgd_mse_sum": (lambda p: torch.optim.SGD(p, lr=0.01), nn.MSELoss(reduction="sum"), None, "reg", "mse_loss", []),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_torch_losses_and_optimizers_check_out(case):
    opt_fn, loss_fn, final, kind, loss_name, slots = CASES[case]
    out = 3 if kind == "cls" else 2
    tr, traced_params, model, opt, _ = _train(opt_fn, loss_fn, final, kind, lambda: trace_torch(strict=True),
                                              out=out)
    _, plain_params, _, _, _ = _train(opt_fn, loss_fn, final, kind, None, out=out)
    assert all(torch.equal(a, b) for a, b in zip(traced_params, plain_params))
    trace = tr.trace
    assert trace.n_steps == 15
    assert trace.meta["loss"]["name"] == loss_name
    assert trace.meta["optimizer"]["convention"] == "torch"
    assert trace.param_names == ["2.bias", "2.weight", "0.bias", "0.weight"] or \
        set(trace.param_names) == {"0.weight", "0.bias", "2.weight", "2.bias"}
    assert sorted(trace.state_slots("0.weight")) == sorted(slots)
    for slot in slots:       # the last recorded state is the optimizer's
        p = dict(model.named_parameters())["0.weight"]
        np.testing.assert_array_equal(trace.param_values("0.weight", slot)[-1], opt.state[p][slot].numpy())
    if not case.startswith("sgd"):            # torch's SGD keeps no step count
        assert trace.steps["opt_step"].tolist() == list(range(1, 16))
    report = tracer.check(trace)
    assert report.ok, str(report)


def test_patches_are_removed_and_loader_is_untouched():
    before_hooks = (len(optim_module._global_optimizer_pre_hooks), len(optim_module._global_optimizer_post_hooks))
    next_fn, next_index = dl._BaseDataLoaderIter.__next__, dl._BaseDataLoaderIter._next_index
    backward = torch.Tensor.backward
    tr, _, model, opt, loader = _train(lambda p: torch.optim.SGD(p, lr=0.1), nn.MSELoss(),
                                       ctx=lambda: trace_torch(), epochs=1)
    assert torch.Tensor.backward is backward
    assert "data" not in torch.Tensor.__dict__ and "__isub__" not in torch.Tensor.__dict__
    assert dl._BaseDataLoaderIter.__next__ is next_fn and dl._BaseDataLoaderIter._next_index is next_index
    assert (len(optim_module._global_optimizer_pre_hooks), len(optim_module._global_optimizer_post_hooks)) \
        == before_hooks
    assert torch.overrides._get_current_function_mode() is None
    assert not opt._optimizer_step_pre_hooks and not model._forward_hooks


def test_patches_are_removed_after_an_exception_and_the_steps_so_far_kept():
    backward = torch.Tensor.backward
    tr = trace_torch()
    X = torch.randn(6, 2)
    with pytest.raises(ZeroDivisionError):
        with tr:
            w = torch.ones(2, 1, requires_grad=True)
            for i in range(3):
                ((X @ w) ** 2).sum().backward()
                with torch.no_grad():
                    w -= 0.01 * w.grad
                    w.grad.zero_()
            1 / 0
    assert torch.Tensor.backward is backward
    assert "data" not in torch.Tensor.__dict__
    assert tr.trace.n_steps == 3


def test_a_tracer_failure_never_breaks_the_training(monkeypatch):
    import hooks.torch.graph as tgraph

    def boom(*args, **kwargs):
        raise RuntimeError("planted")

    _, plain, _, _, _ = _train(lambda p: torch.optim.SGD(p, lr=0.1), nn.MSELoss(), epochs=1)
    monkeypatch.setattr(tgraph, "walk", boom)
    with pytest.warns(RuntimeWarning, match="tracing stopped.*planted"):
        tr, traced_params, _, _, _ = _train(lambda p: torch.optim.SGD(p, lr=0.1), nn.MSELoss(),
                                            ctx=lambda: trace_torch(), epochs=1)
    assert all(torch.equal(a, b) for a, b in zip(plain, traced_params))
    assert any("planted" in n for n in tr.trace.meta["notes"])


def test_summary_capture_keeps_norms_only():
    tr, _, model, _, _ = _train(lambda p: torch.optim.SGD(p, lr=0.1), nn.MSELoss(),
                                ctx=lambda: trace_torch(capture="summary"), epochs=1)
    trace = tr.trace
    assert trace.n_steps == 5 and len(trace.params) == 0
    cols = trace.steps.columns
    for n in ("0.weight", "2.bias"):
        assert {"grad_norm_" + n, "update_norm_" + n, "value_norm_" + n} <= set(cols)
    # SGD: the update norm is lr times the gradient norm
    np.testing.assert_allclose(trace.steps["update_norm_0.weight"], 0.1 * trace.steps["grad_norm_0.weight"],
                               rtol=1e-4)


def test_every_k_records_one_step_in_k():
    tr, _, _, _, _ = _train(lambda p: torch.optim.SGD(p, lr=0.1), nn.MSELoss(),
                            ctx=lambda: trace_torch(every=2), epochs=2)
    trace = tr.trace
    assert trace.meta["capture"]["steps_seen"] == 10
    assert trace.steps["step"].tolist() == [1, 3, 5, 7, 9]
    assert tracer.check(trace).ok


def test_explicit_names_and_raw_tensors_without_loader():
    torch.manual_seed(1)
    X, Y = torch.randn(20, 2), torch.randn(20, 1)
    weights = torch.zeros(2, 1, requires_grad=True)
    bias = torch.zeros(1, requires_grad=True)
    with trace_torch(names={"kernel": weights}, strict=True) as tr:
        for _ in range(3):
            loss = ((X @ weights + bias - Y) ** 2).mean()
            loss.backward()
            with torch.no_grad():
                weights.sub_(0.1 * weights.grad)
                bias.sub_(0.1 * bias.grad)
                weights.grad = None
                bias.grad = None
    trace = tr.trace
    assert trace.param_names == ["kernel", "bias"]
    prog = trace.meta["program"]
    assert prog["params"] == ["kernel", "bias"]
    assert [n["op"] for n in prog["nodes"]] == ["matmul", "add", "sub", "square", "mean"]
    assert prog["outputs"] == {"loss": "loss", "prediction": "add1", "target": "Y"}
    assert trace.meta["update_rule"]["kernel"]["lr"] == 0.1
    assert trace.meta["torch"]["data"] == "full"                  # the whole X every step
    assert trace.arrays().inputs.shape == (20, 2)                  # stored once
    report = tracer.check(trace)
    assert report.ok, str(report)


@pytest.mark.parametrize("kwargs, word", [({"data": 5}, "data"), ({"names": {"w": 3}}, "names"),
                                          ({"capture": "most"}, "capture"), ({"every": 0}, "every")])
def test_bad_arguments_name_themselves(kwargs, word):
    with pytest.raises(TraceInputError, match=word):
        trace_torch(**kwargs)


def test_nested_blocks_are_refused():
    with trace_torch():
        with pytest.raises(TraceInputError, match="already active"):
            with trace_torch():
                pass


def test_unsupported_layer_still_records_rows_predictions_and_updates():
    torch.manual_seed(0)
    X, Y = torch.randn(16, 1, 6, 6), torch.randint(0, 3, (16,))
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(32, 3))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    loader = DataLoader(TensorDataset(X, Y), batch_size=4, shuffle=True)
    loss_fn = nn.CrossEntropyLoss()          # a loss module: its pre-hook hands over the predictions
    with trace_torch(strict=True) as tr:
        for xb, yb in loader:
            opt.zero_grad()
            logits = model(xb)
            loss_fn(logits, yb).backward()
            opt.step()
    trace = tr.trace
    (bad,) = trace.meta["program"]["unsupported"]
    assert bad["op"] == "conv2d" and bad["where"].startswith("test_torch_hook.py:")
    assert sorted(trace.samples["sample"]) == list(range(16))
    np.testing.assert_array_equal(trace.arrays().inputs, X.reshape(16, -1).numpy())
    np.testing.assert_array_equal(trace.arrays().sample_pred[-4:], logits.detach().numpy())
    report = tracer.check(trace)
    assert any("conv2d at test_torch_hook.py:" in c for c in report.cannot_check)
    assert report.table[report.table["quantity"] == "update"]["passed"].all()


def test_loader_with_workers_reports_the_rows_each_batch_holds():
    torch.manual_seed(3)
    X, Y = torch.randn(24, 2), torch.randn(24, 1)
    model = nn.Sequential(nn.Linear(2, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    loader = DataLoader(TensorDataset(X, Y), batch_size=5, shuffle=True, num_workers=2)
    with trace_torch(strict=True) as tr:
        for epoch in range(2):
            for xb, yb in loader:
                opt.zero_grad()
                nn.MSELoss()(model(xb), yb).backward()
                opt.step()
    trace = tr.trace
    assert trace.n_steps == 10 and trace.steps["epoch"].tolist() == [1] * 5 + [2] * 5
    for e in (1, 2):
        steps = trace.steps.loc[trace.steps["epoch"] == e, "step"]
        assert sorted(trace.samples[trace.samples["step"].isin(steps)]["sample"]) == list(range(24))
    assert tracer.check(trace).ok      # predictions recomputed from the recorded rows agree


def test_two_training_loops_in_one_block_make_two_runs():
    X, Y = torch.randn(12, 2), torch.randn(12, 1)
    first = nn.Linear(2, 1)
    opt = torch.optim.SGD(first.parameters(), lr=0.1)
    w = torch.zeros(2, 1, requires_grad=True)
    with trace_torch(strict=True) as tr:
        for _ in range(3):
            opt.zero_grad()
            nn.MSELoss()(first(X), Y).backward()
            opt.step()
        for _ in range(2):
            ((X @ w - Y) ** 2).mean().backward()
            with torch.no_grad():
                w -= 0.1 * w.grad
                w.grad.zero_()
    assert [t.n_steps for t in tr.traces] == [3, 2]
    assert tr.trace is tr.traces[-1]
    assert tr.traces[0].param_names == ["bias", "weight"] or set(tr.traces[0].param_names) == {"weight", "bias"}
    assert tr.traces[1].param_names == ["w"]
    assert tr.traces[0].meta["optimizer"]["name"] == "sgd" and tr.traces[1].meta["optimizer"] is None
    for t in tr.traces:
        assert tracer.check(t).ok


@pytest.mark.parametrize("loss_fn, op, attrs", [(nn.HuberLoss(delta=0.7), "huber_loss", {"delta": 0.7}),
                                                (nn.SmoothL1Loss(beta=0.5), "smooth_l1_loss", {"beta": 0.5}),
                                                (nn.SmoothL1Loss(), "smooth_l1_loss", {"beta": 1.0}),
                                                (nn.SmoothL1Loss(beta=0.0), "l1_loss", {})])
def test_huber_and_smooth_l1(loss_fn, op, attrs):
    tr, _, _, _, _ = _train(lambda p: torch.optim.SGD(p, lr=0.1), loss_fn, ctx=lambda: trace_torch(strict=True),
                            epochs=1)
    node = tr.trace.meta["program"]["nodes"][-1]
    assert node["op"] == op and node["attrs"] == {"reduction": "mean", **attrs}
    assert (tr.trace.meta["loss"]["name"], tr.trace.meta["loss"]["reduction"]) == (op, "mean")
    report = tracer.check(tr.trace)
    assert report.ok, str(report)


def test_an_operation_outside_the_table_is_named_with_its_line():
    torch.manual_seed(0)
    X, Y = torch.randn(10, 2), torch.randn(10, 1)
    m = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1))
    opt = torch.optim.SGD(m.parameters(), lr=0.1)
    with trace_torch(strict=True) as tr:
        for _ in range(3):
            opt.zero_grad()
            torch.log(torch.cosh(m(X) - Y)).mean().backward()       # log-cosh: cosh is not in the registry
            opt.step()
    trace = tr.trace
    (bad,) = trace.meta["program"]["unsupported"]
    assert bad["op"] == "cosh" and bad["where"].startswith("test_torch_hook.py:")
    report = tracer.check(trace)
    assert any(c.startswith("model: cosh at test_torch_hook.py:") for c in report.cannot_check), str(report)
    assert not report.ok and report.table[report.table["quantity"] == "update"]["passed"].all()


HAND_WRITTEN = {
    "0.5 * sum": (lambda yh, y, n: 0.5 * ((yh - y) ** 2).sum(), ["sub", "square", "sum", "mul"]),
    "mean": (lambda yh, y, n: ((yh - y) ** 2).mean(), ["sub", "square", "mean"]),
    "(y - yh).pow(2).sum() / len": (lambda yh, y, n: (y - yh).pow(2).sum() / n, ["sub", "square", "sum", "div"]),
    "sum / 2 / n": (lambda yh, y, n: ((yh - y) ** 2).sum() / 2 / n, ["sub", "square", "sum", "div", "div"]),
    "mean(abs)": (lambda yh, y, n: torch.mean(torch.abs(yh - y)), ["sub", "abs", "mean"]),
    "mse_loss(sum) / 2": (lambda yh, y, n: nn.functional.mse_loss(yh, y, reduction="sum") / 2, ["mse_loss", "div"]),
}


@pytest.mark.parametrize("case", sorted(HAND_WRITTEN))
def test_hand_written_losses_become_the_program(case):
    fn, ops = HAND_WRITTEN[case]
    torch.manual_seed(0)
    X, Y = torch.randn(8, 2), torch.randn(8, 1)
    w = torch.zeros(2, 1, requires_grad=True)
    b = torch.zeros(1, requires_grad=True)
    with trace_torch(strict=True) as tr:
        for _ in range(3):
            fn(X @ w + b, Y, len(X)).backward()
            with torch.no_grad():
                w -= 0.1 * w.grad
                b -= 0.1 * b.grad
                w.grad.zero_()
                b.grad.zero_()
    prog = tr.trace.meta["program"]
    assert [n["op"] for n in prog["nodes"]] == ["matmul", "add"] + ops
    assert prog["outputs"]["target"] == "Y" and prog["outputs"]["prediction"] == "add1"
    report = tracer.check(tr.trace)
    assert report.ok, str(report)


def test_custom_dataset_rows_come_from_the_loader_indices():
    class Squares(torch.utils.data.Dataset):
        def __len__(self):
            return 20

        def __getitem__(self, i):
            x = torch.tensor([float(i), float(i) ** 0.5])
            return x, x.sum(dim=0, keepdim=True)

    torch.manual_seed(4)
    model = nn.Linear(2, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.001)
    loader = DataLoader(Squares(), batch_size=6, shuffle=True)
    with trace_torch(strict=True) as tr:
        for epoch in range(2):
            for xb, yb in loader:
                opt.zero_grad()
                nn.MSELoss()(model(xb), yb).backward()
                opt.step()
    trace = tr.trace
    assert trace.meta["torch"]["data"] == "indexed"
    rows = trace.samples["sample"].to_numpy()
    assert sorted(rows[:20].tolist()) == list(range(20))
    np.testing.assert_allclose(trace.arrays().inputs[:, 0], np.arange(20.0))
    assert tracer.check(trace).ok
