"""Read the model part of an autograd graph: a stack of dense layers, the batch, the predictions.

Why: raw-tensor training code (S1, S3, S4) has no ``nn.Module`` to inspect, but the
graph below the loss holds every layer as torch ran it: ``mm``/``addmm`` + a bias +
an activation. Walking it from the predictions down to the input gives a neutral
``dense_stack`` (input to output), the batch ``X`` the first layer saw, and a function
recomputing the predictions with the very op the user ran (bit-identical values).
Anything else raises :class:`tracer.errors.UnsupportedModel` with the reason.
"""
from __future__ import annotations

from typing import Any, Callable

import torch

from tracer.errors import UnsupportedModel

from .graph_nodes import ACTIVATIONS, node_name, strip_views


def _param_of(node):
    """(tensor, transposed) for a weight operand: AccumulateGrad, or TBackward0 of one."""
    t = False
    if node is not None and node_name(node) in ("TBackward0", "TransposeBackward0", "PermuteBackward0"):
        t = True
        node = node.next_functions[0][0]
    var = getattr(node, "variable", None) if node is not None else None
    if var is None:
        raise UnsupportedModel("a matmul whose weight is not a trained tensor")
    return var, t


def _bias_of(node, other_idx, add_node, const_args, known=None, candidates=None, verify=None):
    """(bias tensor or None, is_const); ``known`` is the constant this layer used before;
    ``candidates``/``verify`` find an unknown constant among the user's tensors."""
    nf = add_node.next_functions[other_idx][0]
    if nf is not None:
        var = getattr(nf, "variable", None)
        if var is None:
            nf2 = strip_views(nf)
            if nf2 is not None and node_name(nf2) == "ExpandBackward0":
                var = getattr(nf2.next_functions[0][0], "variable", None)
        if var is None:
            raise UnsupportedModel(f"a layer adds {node_name(nf)} where a bias was expected")
        return var, False
    entry = const_args.get(id(add_node))
    args = entry[1] if entry else None
    if args:
        consts = [a for a in args if isinstance(a, torch.Tensor) and a.grad_fn is None and not a.requires_grad]
        if consts:
            return consts[0], True
    if known is not None:
        return known, True
    if candidates is not None and verify is not None:
        for cand in candidates():
            if verify(cand):
                return cand, True
    raise UnsupportedModel("a layer adds a constant whose value is unknown")


def _verifier(mm, w, first, act_node, addmm=False):
    """A test that a candidate constant bias reproduces the layer's saved output exactly."""
    if act_node is None:
        return None
    name = node_name(act_node)

    def verify(c):
        try:
            with torch.no_grad():
                if addmm:
                    z = torch.addmm(c, mm._saved_mat1, w())
                else:
                    m = torch.mm(mm._saved_self, w())
                    z = m + c if first else c + m
                if name == "MaximumBackward0":
                    return torch.equal(z, act_node._saved_self)
                result = getattr(act_node, "_saved_result", None)
                f = {"ReluBackward0": torch.relu, "SigmoidBackward0": torch.sigmoid,
                     "TanhBackward0": torch.tanh}.get(name)
                return result is not None and f is not None and torch.equal(f(z), result)
        except (RuntimeError, TypeError):
            return False
    return verify


def parse_model(pred_node: Any, const_args: dict, const_by_pos: dict, holder: list,
                candidates: Callable[[], list] | None = None) -> tuple[list[dict], torch.Tensor, Callable]:
    """Layers from input to output, the batch X, and a function giving the predictions.

    ``holder`` receives the prediction function as soon as the last layer is read, so a
    caller can still recompute predictions when a lower layer is unsupported.
    """
    layers = []
    node = strip_views(pred_node)
    act = "linear"
    act_node = None
    last_fn = None
    while node is not None:
        name = node_name(node)
        if name in ACTIVATIONS or name == "MaximumBackward0" or name == "ClampMinBackward0":
            if act != "linear":
                raise UnsupportedModel("two activations in a row")
            act, act_node = _activation(node, name), node
            node = strip_views(node.next_functions[0][0])
            continue
        layer = {"activation": act, "bias": None, "bias_const": False}
        known = const_by_pos.get(len(layers))
        if name == "AddmmBackward0":
            inp, nxt, fn = _addmm_layer(node, layer, const_args, known, candidates, act_node)
        elif name in ("AddBackward0", "MmBackward0"):
            inp, nxt, fn = _mm_layer(node, name, layer, const_args, known, candidates, act_node)
        else:
            raise UnsupportedModel(f"operation {name} in the model")
        if last_fn is None:
            last_fn = _with_activation(fn, act, act_node)
            holder.append(last_fn)
        layer["units"] = int(layer["weight"].shape[0] if layer["transpose"] else layer["weight"].shape[-1])
        layers.append(layer)
        act, act_node = "linear", None
        node = strip_views(nxt)
        if node is None:
            x = inp.detach()
            layers.reverse()
            return layers, x, last_fn
    raise UnsupportedModel("empty model")


def _activation(node, name):
    """The neutral name of an activation node (``torch.max(x, 0)`` and ``clamp(min=0)`` are relu)."""
    if name == "MaximumBackward0":
        if node.next_functions[1][0] is not None or float(node._saved_other.max()) != 0.0 \
                or node._saved_other.numel() != 1:
            raise UnsupportedModel("torch.max of two tensors that is not relu")
        return "relu"
    if name == "ClampMinBackward0":
        if float(node._saved_min) != 0.0:
            raise UnsupportedModel("clamp(min) other than 0")
        return "relu"
    return ACTIVATIONS[name]


def _addmm_layer(node, layer, const_args, known, candidates, act_node):
    """``addmm(b, X, W)``: fills ``layer``; returns (input, node below, prediction function)."""
    if float(node._saved_alpha) != 1.0 or float(node._saved_beta) != 1.0:
        raise UnsupportedModel("addmm with alpha/beta other than 1")
    layer["weight"], layer["transpose"] = _param_of(node.next_functions[2][0])
    layer["bias"], layer["bias_const"] = _bias_of(
        node, 0, node, const_args, known, candidates,
        _verifier(node, _operand(layer), True, act_node, addmm=True))
    inp = node._saved_mat1
    nxt = node.next_functions[1][0]
    mm = node

    def fn(mm=mm, b=layer["bias"], w=_operand(layer)):
        return torch.addmm(b, mm._saved_mat1, w())
    return inp, nxt, fn


def _mm_layer(node, name, layer, const_args, known, candidates, act_node):
    """``X @ W`` with or without ``+ b``: fills ``layer``; returns (input, node below, prediction function)."""
    if name == "AddBackward0":
        if float(node._saved_alpha) != 1.0:
            raise UnsupportedModel("add with alpha other than 1")
        sides = [strip_views(n) for n, _ in node.next_functions[:2]]
        mm_idx = next((i for i, s in enumerate(sides) if s is not None and node_name(s) == "MmBackward0"), None)
        if mm_idx is None:
            raise UnsupportedModel("an addition that is not matmul + bias")
        mm = sides[mm_idx]
        layer["weight"], layer["transpose"] = _param_of(mm.next_functions[1][0])
        layer["bias"], layer["bias_const"] = _bias_of(
            node, 1 - mm_idx, node, const_args, known, candidates,
            _verifier(mm, _operand(layer), mm_idx == 0, act_node))
    else:
        mm, mm_idx = node, 0
    layer["weight"], layer["transpose"] = _param_of(mm.next_functions[1][0])
    inp = mm._saved_self
    nxt = mm.next_functions[0][0]
    b = layer["bias"]

    w = _operand(layer)
    if b is None:
        def fn(mm=mm, w=w):
            return torch.mm(mm._saved_self, w())
    elif mm_idx == 0:
        def fn(mm=mm, b=b, w=w):
            return torch.mm(mm._saved_self, w()) + b
    else:
        def fn(mm=mm, b=b, w=w):
            return b + torch.mm(mm._saved_self, w())
    return inp, nxt, fn


def _operand(layer):
    """The weight exactly as the matmul saw it (``w.t()`` for a transposed layer)."""
    w = layer["weight"]
    if layer["transpose"]:
        return lambda: w.t()
    return lambda: w


def _with_activation(fn, act, act_node):
    """The prediction: the activation's saved result when it keeps one, else recompute."""
    if act == "linear":
        return fn
    if act_node is not None and hasattr(act_node, "_saved_result"):
        return lambda n=act_node: n._saved_result
    if act == "relu":
        return lambda: torch.relu(fn())
    raise UnsupportedModel(f"activation {act} whose output is not saved")
