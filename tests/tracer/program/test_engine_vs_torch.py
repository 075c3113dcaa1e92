"""The step-program engine against torch autograd, op by op, for stacks of steps.

Each case is a tiny program and the same computation written in torch. Leaves are
random per step (S = 3 steps stacked), the engine evaluates all steps at once in
float64, torch evaluates each step in float64: values and gradients must agree to
1e-10 relative. Broadcasting cases include the classic (N, 1) against (N,) loss.
"""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from tracer.program import Evaluation, StepProgram

S = 3
RNG = np.random.default_rng(0)


def _program(leaves, nodes, loss, prediction=None):
    inputs = [{"name": k, "source": "inputs"} for k, v in leaves.items() if v[0] == "data"]
    params = [k for k, v in leaves.items() if v[0] == "param"]
    consts = [{"name": k, "value": v[1].tolist(), "dtype": "int" if v[1].dtype.kind in "iu" else "float"}
              for k, v in leaves.items() if v[0] == "const"]
    outputs = {"loss": loss}
    if prediction:
        outputs["prediction"] = prediction
    return StepProgram.from_dict({"inputs": inputs, "params": params, "consts": consts, "nodes": nodes,
                                  "outputs": outputs})


def _compare(leaves, nodes, torch_fn, loss="loss", rtol=1e-10):
    """leaves: name -> (kind, value per step (S, ...) for data/param, shared value for const)."""
    prog = _program(leaves, nodes, loss)
    stacked = {}
    for k, (kind, v) in leaves.items():
        stacked[k] = v[None] if kind == "const" else v
    ev = Evaluation(prog, stacked)
    got_loss = ev.loss
    grads = ev.gradients()
    for s in range(S):
        tl = {}
        for k, (kind, v) in leaves.items():
            val = v if kind == "const" else v[s]
            t = torch.tensor(val)
            if kind == "param":
                t.requires_grad_(True)
            tl[k] = t
        out = torch_fn(**tl)
        out.backward()
        np.testing.assert_allclose(got_loss[s], out.item(), rtol=rtol, atol=1e-12)
        for k, (kind, _) in leaves.items():
            if kind == "param":
                np.testing.assert_allclose(grads[k][s], tl[k].grad.numpy(), rtol=rtol, atol=1e-12,
                                           err_msg=f"gradient of {k} at step {s}")
    return ev


def r(*shape):
    return RNG.normal(size=(S,) + shape)


UNARY = ["exp", "log", "sqrt", "abs", "tanh", "sigmoid", "relu", "silu", "sin", "cos", "neg", "square",
         "reciprocal", "erf", "log1p", "expm1", "rsqrt"]
TORCH_UNARY = {"square": torch.square, "reciprocal": torch.reciprocal, "neg": torch.neg, "silu": F.silu,
               "rsqrt": torch.rsqrt}


@pytest.mark.parametrize("name", UNARY)
def test_unary_ops(name):
    x = r(4, 3)
    if name in ("log", "sqrt", "reciprocal", "log1p", "rsqrt"):
        x = np.abs(x) + 0.1
    fn = TORCH_UNARY.get(name) or getattr(torch, name)
    nodes = [{"name": "y", "op": name, "args": ["w"]}, {"name": "loss", "op": "sum", "args": ["y"]}]
    _compare({"w": ("param", x)}, nodes, lambda w: fn(w).sum())


@pytest.mark.parametrize("name,attrs,fn", [
    ("leaky_relu", {"alpha": 0.2}, lambda w: F.leaky_relu(w, 0.2)),
    ("elu", {"alpha": 0.7}, lambda w: F.elu(w, 0.7)),
    ("selu", {}, F.selu),
    ("gelu", {"approximate": "none"}, lambda w: F.gelu(w)),
    ("gelu", {"approximate": "tanh"}, lambda w: F.gelu(w, approximate="tanh")),
    ("softplus", {"beta": 2.0, "threshold": 3.0}, lambda w: F.softplus(w, beta=2.0, threshold=3.0)),
    ("clamp", {"min": -0.5, "max": 0.3}, lambda w: torch.clamp(w, -0.5, 0.3)),
    ("clamp", {"min": 0.0}, lambda w: torch.clamp(w, min=0.0)),
])
def test_parametrised_activations(name, attrs, fn):
    x = r(5, 2) * 2
    nodes = [{"name": "y", "op": name, "args": ["w"], "attrs": attrs},
             {"name": "y2", "op": "mul", "args": ["y", "y"]}, {"name": "loss", "op": "sum", "args": ["y2"]}]
    _compare({"w": ("param", x)}, nodes, lambda w: (fn(w) * fn(w)).sum())


def test_relu_and_maximum_kinks_follow_torch():
    x = np.array([[-1.0, 0.0, 2.0], [0.0, 0.0, -3.0], [1.0, 0.0, 0.0]])
    nodes = [{"name": "a", "op": "relu", "args": ["w"]}, {"name": "b", "op": "maximum", "args": ["w", 0.0]},
             {"name": "c", "op": "abs", "args": ["w"]}, {"name": "ab", "op": "add", "args": ["a", "b"]},
             {"name": "abc", "op": "add", "args": ["ab", "c"]}, {"name": "loss", "op": "sum", "args": ["abc"]}]
    _compare({"w": ("param", x)}, nodes,
             lambda w: (torch.relu(w) + torch.max(w, torch.tensor(0.0, dtype=torch.float64)) + w.abs()).sum())


@pytest.mark.parametrize("op,fn", [("add", torch.add), ("sub", torch.sub), ("mul", torch.mul),
                                   ("div", torch.div), ("maximum", torch.maximum), ("minimum", torch.minimum)])
def test_binary_broadcasting(op, fn):
    a, b = r(4, 1), r(3)
    if op == "div":
        b = np.abs(b) + 0.5
    nodes = [{"name": "c", "op": op, "args": ["a", "b"]}, {"name": "c2", "op": "mul", "args": ["c", "c"]},
             {"name": "loss", "op": "mean", "args": ["c2"]}]
    _compare({"a": ("param", a), "b": ("param", b)}, nodes, lambda a, b: (fn(a, b) ** 2).mean())


def test_pow_with_a_tensor_exponent_and_scalar_params():
    # the nn variant of the polynomial tutorial: x.unsqueeze(-1).pow(p), p = [1, 2, 3]
    x = RNG.uniform(-3, 3, size=(S, 7))
    p = np.array([1.0, 2.0, 3.0])
    w, b = r(1, 3), r(1)
    nodes = [{"name": "xu", "op": "unsqueeze", "args": ["x"], "attrs": {"dim": -1}},
             {"name": "xx", "op": "pow", "args": ["xu", "p"]},
             {"name": "z", "op": "linear", "args": ["xx", "w", "b"]},
             {"name": "pred", "op": "flatten", "args": ["z"], "attrs": {"start": 0, "end": 1}},
             {"name": "loss", "op": "mse_loss", "args": ["pred", "y"], "attrs": {"reduction": "sum"}}]
    y = np.sin(x)
    _compare({"x": ("data", x), "y": ("data", y), "p": ("const", p), "w": ("param", w), "b": ("param", b)}, nodes,
             lambda x, y, p, w, b: F.mse_loss(torch.flatten(F.linear(x.unsqueeze(-1).pow(p), w, b), 0, 1), y,
                                              reduction="sum"))


def test_raw_polynomial_with_scalar_parameters():
    x = RNG.uniform(-3, 3, size=(S, 11))
    leaves = {"x": ("data", x), "y": ("data", np.sin(x))}
    for k in "abcd":
        leaves[k] = ("param", r())
    nodes = [{"name": "bx", "op": "mul", "args": ["b", "x"]}, {"name": "x2", "op": "pow", "args": ["x", 2]},
             {"name": "cx2", "op": "mul", "args": ["c", "x2"]}, {"name": "x3", "op": "pow", "args": ["x", 3]},
             {"name": "dx3", "op": "mul", "args": ["d", "x3"]}, {"name": "s1", "op": "add", "args": ["a", "bx"]},
             {"name": "s2", "op": "add", "args": ["s1", "cx2"]}, {"name": "pred", "op": "add", "args": ["s2", "dx3"]},
             {"name": "diff", "op": "sub", "args": ["pred", "y"]}, {"name": "sq", "op": "pow", "args": ["diff", 2]},
             {"name": "loss", "op": "sum", "args": ["sq"]}]
    _compare(leaves, nodes, lambda x, y, a, b, c, d: (a + b * x + c * x ** 2 + d * x ** 3 - y).pow(2).sum())


def test_prediction_column_against_flat_targets_broadcasts_to_a_matrix():
    x, y = r(6, 2), r(6)
    w = r(2, 1)
    nodes = [{"name": "pred", "op": "matmul", "args": ["x", "w"]},
             {"name": "loss", "op": "mse_loss", "args": ["pred", "y"]}]
    ev = _compare({"x": ("data", x), "y": ("data", y), "w": ("param", w)}, nodes,
                  lambda x, y, w: ((x @ w - y) ** 2).mean())
    assert ev.value("loss/term").shape == (S, 6, 6)


@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("name,fn,attrs", [
    ("mse_loss", F.mse_loss, {}), ("l1_loss", F.l1_loss, {}),
    ("huber_loss", lambda a, b, reduction: F.huber_loss(a, b, reduction=reduction, delta=0.7), {"delta": 0.7}),
    ("smooth_l1_loss", lambda a, b, reduction: F.smooth_l1_loss(a, b, reduction=reduction, beta=0.5), {"beta": 0.5}),
])
def test_regression_losses(name, fn, attrs, reduction):
    p, y = r(5, 2), r(5, 2)
    nodes = [{"name": "loss", "op": name, "args": ["p", "y"], "attrs": {"reduction": reduction, **attrs}}]
    _compare({"p": ("param", p), "y": ("data", y)}, nodes, lambda p, y: fn(p, y, reduction=reduction))


def test_binary_cross_entropies():
    z, t = r(6, 1), RNG.integers(0, 2, size=(S, 6, 1)).astype(float)
    nodes = [{"name": "p", "op": "sigmoid", "args": ["z"]},
             {"name": "l1", "op": "binary_cross_entropy", "args": ["p", "t"]},
             {"name": "l2", "op": "binary_cross_entropy_with_logits", "args": ["z", "t"],
              "attrs": {"reduction": "sum", "pos_weight": 2.5}},
             {"name": "loss", "op": "add", "args": ["l1", "l2"]}]
    _compare({"z": ("param", z), "t": ("data", t)}, nodes,
             lambda z, t: F.binary_cross_entropy(torch.sigmoid(z), t) + F.binary_cross_entropy_with_logits(
                 z, t, reduction="sum", pos_weight=torch.tensor(2.5, dtype=torch.float64)))


@pytest.mark.parametrize("smoothing", [0.0, 0.2])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_cross_entropy_class_targets(smoothing, weighted, reduction):
    z = r(7, 4)
    t = RNG.integers(0, 4, size=(S, 7))
    t[:, 2] = -100                              # an ignored target
    w = np.array([0.5, 1.0, 2.0, 0.25])
    leaves = {"z": ("param", z), "t": ("data", t)}
    args = ["z", "t"]
    if weighted:
        leaves["w"] = ("const", w)
        args.append("w")
    attrs = {"num_classes": 4, "label_smoothing": smoothing, "reduction": reduction}
    nodes = [{"name": "ce", "op": "cross_entropy", "args": args, "attrs": attrs}]
    if reduction == "none":
        nodes.append({"name": "loss", "op": "sum", "args": ["ce"]})
    else:
        nodes[0]["name"] = "loss"

    def fn(z, t, w=None):
        out = F.cross_entropy(z, t, weight=w, label_smoothing=smoothing, reduction=reduction)
        return out.sum() if reduction == "none" else out
    _compare(leaves, nodes, fn)


def test_cross_entropy_probability_targets_and_nll():
    z = r(5, 3)
    p = RNG.dirichlet(np.ones(3), size=(S, 5))
    t = RNG.integers(0, 3, size=(S, 5))
    nodes = [{"name": "a", "op": "cross_entropy", "args": ["z", "p"],
              "attrs": {"num_classes": 3, "target": "prob", "label_smoothing": 0.1}},
             {"name": "lp", "op": "log_softmax", "args": ["z"], "attrs": {"dim": 1}},
             {"name": "b", "op": "nll_loss", "args": ["lp", "t"], "attrs": {"num_classes": 3}},
             {"name": "loss", "op": "add", "args": ["a", "b"]}]
    _compare({"z": ("param", z), "p": ("data", p), "t": ("data", t)}, nodes,
             lambda z, p, t: F.cross_entropy(z, p, label_smoothing=0.1) + F.nll_loss(F.log_softmax(z, 1), t))


def test_mlp_with_shapes_indexing_and_softmax():
    x, y = r(6, 4), RNG.integers(0, 3, size=(S, 6))
    w1, b1, w2 = r(5, 4), r(5), r(3, 5)
    ar = np.arange(6)
    nodes = [{"name": "h", "op": "linear", "args": ["x", "w1", "b1"]},
             {"name": "a", "op": "tanh", "args": ["h"]},
             {"name": "t", "op": "transpose", "args": ["w2"], "attrs": {"dim0": 0, "dim1": 1}},
             {"name": "z", "op": "matmul", "args": ["a", "t"]},
             {"name": "sm", "op": "softmax", "args": ["z"], "attrs": {"dim": -1}},
             {"name": "lp", "op": "log", "args": ["sm"]},
             {"name": "pick", "op": "index", "args": ["lp", "ar", "y"], "attrs": {"items": [{"arg": 1}, {"arg": 2}]}},
             {"name": "nl", "op": "neg", "args": ["pick"]},
             {"name": "loss", "op": "mean", "args": ["nl"]}]
    _compare({"x": ("data", x), "y": ("data", y), "ar": ("const", ar), "w1": ("param", w1), "b1": ("param", b1),
              "w2": ("param", w2)}, nodes,
             lambda x, y, ar, w1, b1, w2: -torch.log(torch.softmax(torch.tanh(F.linear(x, w1, b1)) @ w2.t(), -1))[
                 ar, y].mean())


def test_shapes_reductions_and_gather():
    w = r(2, 3, 4)
    idx = RNG.integers(0, 4, size=(S, 2, 3, 2))
    nodes = [{"name": "p", "op": "permute", "args": ["w"], "attrs": {"dims": [2, 0, 1]}},
             {"name": "f", "op": "reshape", "args": ["p"], "attrs": {"shape": [0, -1]}},
             {"name": "e", "op": "logsumexp", "args": ["f"], "attrs": {"dims": [1]}},
             {"name": "g", "op": "gather", "args": ["w", "idx"], "attrs": {"dim": 2}},
             {"name": "gs", "op": "sum", "args": ["g"], "attrs": {"dims": [0, 2], "keepdim": True}},
             {"name": "sq", "op": "squeeze", "args": ["gs"]},
             {"name": "c", "op": "concat", "args": ["e", "sq"], "attrs": {"dim": 0}},
             {"name": "st", "op": "stack", "args": ["c", "c"], "attrs": {"dim": 1}},
             {"name": "ex", "op": "expand", "args": ["st"], "attrs": {"shape": [-1, 2]}},
             {"name": "c2", "op": "mul", "args": ["ex", "ex"]},
             {"name": "loss", "op": "sum", "args": ["c2"]}]
    _compare({"w": ("param", w), "idx": ("data", idx)}, nodes,
             lambda w, idx: (torch.stack([torch.cat([torch.logsumexp(w.permute(2, 0, 1).reshape(4, -1), 1),
                                                     torch.gather(w, 2, idx).sum((0, 2), keepdim=True).squeeze()]),
                                          ] * 2, 1) ** 2).sum())


def test_where_and_comparisons_route_gradients():
    w = r(8)
    nodes = [{"name": "m", "op": "gt", "args": ["w", 0.1]}, {"name": "sc", "op": "mul", "args": ["w", 0.01]},
             {"name": "o", "op": "where", "args": ["m", "w", "sc"]}, {"name": "o2", "op": "mul", "args": ["o", "o"]},
             {"name": "loss", "op": "sum", "args": ["o2"]}]
    _compare({"w": ("param", w)}, nodes, lambda w: (torch.where(w > 0.1, w, 0.01 * w) ** 2).sum())


def test_detach_stops_the_gradient():
    w = r(3)
    nodes = [{"name": "d", "op": "detach", "args": ["w"]}, {"name": "m", "op": "mul", "args": ["w", "d"]},
             {"name": "loss", "op": "sum", "args": ["m"]}]
    _compare({"w": ("param", w)}, nodes, lambda w: (w * w.detach()).sum())


def test_amax_amin_and_size():
    w = r(4, 5)
    nodes = [{"name": "m", "op": "amax", "args": ["w"], "attrs": {"dims": [1], "keepdim": True}},
             {"name": "sh", "op": "sub", "args": ["w", "m"]},
             {"name": "e", "op": "exp", "args": ["sh"]},
             {"name": "mn", "op": "amin", "args": ["w"], "attrs": {"dims": [0]}},
             {"name": "n", "op": "size", "args": ["w"], "attrs": {"dims": [0]}},
             {"name": "se", "op": "sum", "args": ["e"]}, {"name": "smn", "op": "sum", "args": ["mn"]},
             {"name": "t", "op": "add", "args": ["se", "smn"]},
             {"name": "loss", "op": "div", "args": ["t", "n"]}]
    _compare({"w": ("param", w)}, nodes,
             lambda w: (torch.exp(w - w.amax(1, keepdim=True)).sum() + w.amin(0).sum()) / w.shape[0])


def test_hardtanh_and_relu6_pass_no_gradient_at_the_bounds():
    w = np.array([[-1.0, -0.5, 0.0, 1.0, 6.0, 7.0]] * S)
    nodes = [{"name": "h", "op": "hardtanh", "args": ["w"], "attrs": {"min": -0.5, "max": 1.0}},
             {"name": "r", "op": "hardtanh", "args": ["w"], "attrs": {"min": 0.0, "max": 6.0}},
             {"name": "hr", "op": "add", "args": ["h", "r"]}, {"name": "loss", "op": "sum", "args": ["hr"]}]
    _compare({"w": ("param", w)}, nodes, lambda w: (F.hardtanh(w, -0.5, 1.0) + F.relu6(w)).sum())
