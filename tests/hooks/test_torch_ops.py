"""The translation table (hooks/torch/ops*.py): each rule computes what torch computed.

Each case is a one-parameter model ``f(x, w)`` trained for two steps under ``trace_torch``;
the checker recomputes the loss, the predictions and the gradient from the program the
rule emitted and must agree with torch's numbers. Refused calls become ``unsupported``
entries that name the call and its line.
"""
import pytest
import torch
import torch.nn.functional as F

import tracer
from hooks.torch import trace_torch

CASES = {
    "add_alpha_rsub": lambda x, w: torch.rsub(torch.add(x @ w, x[:, :2], alpha=0.5), 1.0, alpha=2),
    "rdiv_rpow_neg": lambda x, w: 2.0 / (1.5 + (x @ w) ** 2) - 2 ** (x @ w).tanh(),
    "where_clamp_max": lambda x, w: torch.where(x[:, :2] > 0, (x @ w).clamp(-1.0, 0.5), torch.maximum(x @ w, x[:, 1:3])),
    "clamp_min_max": lambda x, w: (x @ w).clamp_min(-0.2) + (x @ w).clamp_max(0.1) + torch.minimum(x @ w, x[:, :2]),
    "unary_chain": lambda x, w: torch.sqrt(torch.exp(x @ w) + 1).log() + (x @ w).abs() + torch.sigmoid(x @ w).square(),
    "activations": lambda x, w: F.elu(x @ w, 0.7) + F.selu(x @ w) + F.softplus(x @ w, beta=3.0) + F.silu(x @ w),
    "gelu_exact": lambda x, w: F.gelu(x @ w) * F.leaky_relu(x @ w, 0.1),
    "softmax_logsumexp": lambda x, w: F.softmax(x @ w, dim=1) + F.log_softmax(x @ w, dim=-1)
    + torch.logsumexp(x @ w, dim=1, keepdim=True),
    "reductions": lambda x, w: (x @ w).sum(dim=1, keepdim=True) - (x @ w).mean(0) + (x @ w).mean(),
    "shapes": lambda x, w: (x @ w).view(x.shape[0], 1, 2).transpose(1, 2).flatten(1).unsqueeze(0).squeeze(0),
    "permute_T_expand": lambda x, w: (x @ w).T.T.permute(1, 0).t() + w[0].expand(x.shape[0], 2),
    "index_and_gather": lambda x, w: (x @ w)[:, [1, 0]] * (x @ w)[:, 0:1] + torch.gather(
        x @ w, 1, torch.zeros(len(x), 2, dtype=torch.long)),
    "cat_stack": lambda x, w: torch.cat([x @ w, (x @ w) * 2], dim=1)[:, :2] + torch.stack([x @ w, x @ w], 0).sum(0),
    "addmm_linear": lambda x, w: torch.addmm(w[0], x[:, :3], w[:3], beta=0.5, alpha=2.0) + F.linear(x, w.t()),
    "pow_tensor_exponent": lambda x, w: (x @ w).abs().add(0.1).pow(w[1:2] * 0 + 1.5),
    "detach_and_eval_dropout": lambda x, w: F.dropout(x @ w, p=0.3, training=False) + (x @ w).detach() * (x @ w),
    "in_place_on_a_fresh_result": lambda x, w: (x @ w).mul_(2.0).add_(1.0),
}


def _train(fn, steps=2):
    torch.manual_seed(0)
    x = torch.randn(12, 4)
    y = torch.randn(12, 2)
    w = (0.3 * torch.randn(4, 2)).requires_grad_()
    with trace_torch(strict=True) as tr:
        for _ in range(steps):
            loss = F.mse_loss(fn(x, w), y)
            loss.backward()
            with torch.no_grad():
                w -= 0.05 * w.grad
                w.grad = None
    return tr.trace


@pytest.mark.parametrize("case", sorted(CASES))
def test_each_rule_recomputes_torch(case):
    trace = _train(CASES[case])
    assert "unsupported" not in trace.meta["program"], trace.meta["program"].get("unsupported")
    report = tracer.check(trace)
    assert report.verdict == "passed" and not report.cannot_check, str(report)


REFUSED = {
    "max_over_a_dim": (lambda x, w: torch.max(x @ w, dim=1).values.unsqueeze(1).expand(-1, 2), "max"),
    "remainder": (lambda x, w: torch.remainder(x @ w, 1.5), "remainder"),
    "dropout_training": (lambda x, w: F.dropout(x @ w, p=0.5, training=True), "dropout"),
    "boolean_mask": (lambda x, w: (x @ w)[x[:, :2] > 0].sum() + (x @ w) * 0, "__getitem__"),
    "cosh": (lambda x, w: torch.cosh(x @ w), "cosh"),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_what_the_table_does_not_model_is_unsupported_with_its_line(case):
    fn, op = REFUSED[case]
    trace = _train(fn)
    entries = trace.meta["program"]["unsupported"]
    assert [e["op"] for e in entries] == [op]
    assert entries[0]["where"].startswith("test_torch_ops.py:")
    report = tracer.check(trace)
    assert report.verdict == "incomplete" and any(op in c for c in report.cannot_check), str(report)
