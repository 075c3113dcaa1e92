"""Read the loss part of an autograd graph: which loss, how it is reduced, what it compares.

Why: the checker recomputes the loss from a neutral spec (``tracer.math.losses``). The
spec is read from the graph as torch built it - a loss module's node (``MseLossBackward0``
...) or a hand-written squared error (``sum``/``mean`` of ``pow``/``mul`` of a ``sub``,
divided by constants) - so the user's own code decides, not a guess. Anything else raises
:class:`tracer.errors.UnsupportedModel` with the reason.
"""
from __future__ import annotations

from typing import Any, Callable

import torch

from tracer.errors import UnsupportedModel

from .graph_nodes import ACTIVATIONS, REDUCTIONS, VIEWS, depends_on_params, node_name, strip_views

# (node of the predictions, loss spec, function giving the predictions or None, target tensor or None)
LossParts = tuple[Any, dict, "Callable[[], torch.Tensor] | None", "torch.Tensor | None"]

_POINTWISE = {"MseLossBackward0": "mse", "BinaryCrossEntropyBackward0": "bce",
              "BinaryCrossEntropyWithLogitsBackward0": "bce_logits"}


def _pred_side(node):
    """Index of the input of a two-input node that carries the model (or raise)."""
    nfs = [n for n, _ in node.next_functions[:2]]
    if len(nfs) == 2 and (nfs[0] is None) != (nfs[1] is None):      # the usual case: a constant target
        return 0 if nfs[0] is not None else 1
    sides = [i for i, n in enumerate(nfs) if depends_on_params(n)]
    if len(sides) != 1:
        raise UnsupportedModel(f"{node_name(node)}: expected exactly one input that depends on the parameters")
    return sides[0]


def parse_loss(root: Any, g: Any) -> LossParts:
    """(pred_node, spec, pred value fn or None, target tensor or None) of the loss at ``root``.

    ``g`` (the :class:`hooks.torch.graph.Graph` being built) receives ``diff`` for a
    hand-written loss, so targets can be rebuilt from the saved difference.
    """
    node, factor, reduce = _unwrap(root)
    name = node_name(node)
    if name in _POINTWISE:
        return _pointwise_loss(node, name, factor, reduce)
    if name in ("HuberLossBackward0", "SmoothL1LossBackward0"):
        return _huber_loss(node, name, factor, reduce)
    if name == "NllLossBackward0":
        return _nll_loss(node, factor, reduce)
    return _hand_written_loss(node, name, factor, reduce, g)


def _unwrap(root):
    """Walk down through constant divisions/multiplications, one sum/mean and reshapes:
    ``(the loss node below them, the constant factor divided by, "sum"/"mean"/None)``."""
    factor = 1.0
    reduce = None
    node = root
    while True:
        name = node_name(node)
        if name in ("DivBackward0", "DivBackward1"):
            other = node._saved_other
            if isinstance(other, torch.Tensor):
                if other.numel() != 1 or (len(node.next_functions) > 1 and node.next_functions[1][0] is not None):
                    raise UnsupportedModel("loss divided by a tensor that is not a constant")
                other = float(other)
            factor *= float(other)
            node = node.next_functions[0][0]
        elif name in ("MulBackward0", "MulBackward1") and _scalar_factor(node) is not None:
            factor /= _scalar_factor(node)
            node = node.next_functions[0][0]
        elif name in ("SumBackward0", "MeanBackward0"):
            if reduce is not None:
                raise UnsupportedModel("loss reduced twice")
            reduce = "sum" if name == "SumBackward0" else "mean"
            node = node.next_functions[0][0]
        elif name in VIEWS:
            node = node.next_functions[0][0]
        else:
            break
        if node is None:
            raise UnsupportedModel("loss does not depend on the parameters")
    return node, factor, reduce


def _pointwise_loss(node, name, factor, reduce) -> LossParts:
    """``nn.MSELoss``, ``nn.BCELoss``, ``nn.BCEWithLogitsLoss``."""
    side = _pred_side(node)
    saved = (node._saved_self, node._saved_target)
    pred_t, target_t = saved[side].detach(), saved[1 - side].detach()
    torch_red = REDUCTIONS.get(int(node._saved_reduction), "mean")
    base = _POINTWISE[name]
    if base == "bce_logits" and (node._saved_weight is not None or node._saved_pos_weight is not None):
        raise UnsupportedModel("BCEWithLogitsLoss with weight or pos_weight")
    if base == "bce" and node._saved_weight is not None:
        raise UnsupportedModel("BCELoss with weight")
    pred_node = node.next_functions[side][0]
    spec = _spec(base, torch_red, reduce, factor, row_wise=False)
    return pred_node, spec, (lambda t=pred_t: t), target_t


def _huber_loss(node, name, factor, reduce) -> LossParts:
    """``nn.HuberLoss`` and ``nn.SmoothL1Loss`` (which is Huber divided by its beta)."""
    side = _pred_side(node)
    saved = (node._saved_self, node._saved_target)
    pred_t, target_t = saved[side].detach(), saved[1 - side].detach()
    torch_red = REDUCTIONS.get(int(node._saved_reduction), "mean")
    if name == "HuberLossBackward0":
        delta = float(node._saved_delta)
    else:                                   # smooth_l1(beta) = huber(delta=beta) / beta
        delta = float(node._saved_beta)
        if delta <= 0:
            raise UnsupportedModel("SmoothL1Loss with beta=0 (that is L1Loss)")
        factor *= delta
    spec = _spec("huber", torch_red, reduce, factor, row_wise=False)
    spec["delta"] = delta
    return node.next_functions[side][0], spec, (lambda t=pred_t: t), target_t


def _nll_loss(node, factor, reduce) -> LossParts:
    """``nn.CrossEntropyLoss`` (NLL of a log_softmax) on class indices."""
    if node._saved_weight is not None:
        raise UnsupportedModel("CrossEntropyLoss/NLLLoss with class weights")
    inner = strip_views(node.next_functions[0][0])
    if inner is None or node_name(inner) != "LogSoftmaxBackward0":
        raise UnsupportedModel("NLLLoss on something other than log_softmax")
    torch_red = REDUCTIONS.get(int(node._saved_reduction), "mean")
    target_t = node._saved_target.detach()
    pred_node = inner.next_functions[0][0]
    spec = _spec("scce_logits", torch_red, reduce, factor, row_wise=True)
    return pred_node, spec, None, target_t


def _hand_written_loss(node, name, factor, reduce, g) -> LossParts:
    """``pow(d, 2)``, ``d * d`` or ``abs(d)`` of ``d = pred - y``, reduced with sum or mean."""
    kind = None
    core = node
    if name == "PowBackward0" and float(node._saved_exponent) == 2.0:
        kind, node = "squared_error", node.next_functions[0][0]
    elif name == "MulBackward0" and node.next_functions[0][0] is node.next_functions[1][0]:
        kind, node = "squared_error", node.next_functions[0][0]
    elif name == "AbsBackward0":
        kind, node = "mae", node.next_functions[0][0]
    else:
        raise UnsupportedModel(f"loss built from {name}")
    node = strip_views(node)
    if node is None or node_name(node) not in ("SubBackward0", "AddBackward0"):
        raise UnsupportedModel("hand-written loss that is not a function of (prediction - target)")
    if abs(float(node._saved_alpha)) != 1.0:
        raise UnsupportedModel("hand-written loss with a scaled difference")
    side = _pred_side(node)
    pred_node = strip_views(node.next_functions[side][0])
    saved = getattr(core, "_saved_self", None)
    if isinstance(saved, torch.Tensor) and node_name(node) == "SubBackward0":
        g.diff = (saved.detach(), side)
    div = _divide_by_spec(factor, reduce)
    if kind == "mae":
        spec = {"name": "mae", "reduction": "sum" if reduce != "mean" else "mean", "divide_by": div,
                "convention": "torch"}
    else:
        spec = {"name": "squared_error", "divide_by": div, "convention": "torch", "source": "hand-written"}
    if reduce is None:
        raise UnsupportedModel("hand-written loss that is not reduced to a scalar with sum() or mean()")
    return pred_node, spec, None, None


def _scalar_factor(node):
    other = getattr(node, "_saved_other", None)
    if other is None:
        return None
    if isinstance(other, torch.Tensor):
        if other.numel() != 1 or other.requires_grad:
            return None
        if len(node.next_functions) > 1 and node.next_functions[1][0] is not None:
            return None
        return float(other)
    try:
        return float(other)
    except (TypeError, ValueError):
        return None


def _divide_by_spec(factor, reduce):
    """Pending: the symbolic factors are settled per batch by :func:`settle_divide_by`."""
    out = ["n", "m"] if reduce == "mean" else []
    if factor != 1.0:
        out.append(("const", factor))
    return out


def _spec(base, torch_red, reduce, factor, row_wise):
    if torch_red == "none":
        if reduce is None:
            raise UnsupportedModel(f"{base} with reduction='none' not reduced to a scalar")
        torch_red = reduce
    elif reduce is not None:
        raise UnsupportedModel(f"{base} reduced twice")
    div = (["n"] if row_wise else ["n", "m"]) if torch_red == "mean" else []
    if factor != 1.0:
        div.append(("const", factor))
    return {"name": base, "reduction": torch_red, "divide_by": div, "convention": "torch"}


_CANDIDATES = (["n"], ["n", "m"], [2, "n"], [2, "n", "m"], [2], ["m"], [2, "m"])


def settle_divide_by(spec: dict | None, n: int, m: int) -> dict | None:
    """Turn a constant divisor into ``"n"``/``"m"``/2 factors when it equals one (S1's
    ``/ d.numel()`` is ``["n", "m"]``, S3's ``/ 2`` is ``[2]``), else keep the number."""
    if spec is None:
        return None
    div = []
    const = 1.0
    for f in spec.get("divide_by", []):
        if isinstance(f, tuple):
            const *= f[1]
        else:
            div.append(f)
    if const != 1.0:
        value = {"n": n, "m": m}
        found = None
        cands = _CANDIDATES if m != 1 else (["n"], [2, "n"], [2], ["n", "m"], [2, "n", "m"])
        for cand in cands:
            prod = 1.0
            for f in cand:
                prod *= value[f] if isinstance(f, str) else f
            if abs(prod - const) <= 1e-9 * abs(const):
                found = cand
                break
        if found is None:
            found = [int(const) if float(const).is_integer() else const]
        div = div + list(found)
    out = dict(spec)
    out["divide_by"] = div
    return out


_MODEL_NODES = {"AddmmBackward0", "MmBackward0", "MaximumBackward0", "ClampMinBackward0", *ACTIVATIONS}


def guess_pred_node(root: Any) -> Any:
    """For a loss outside the vocabulary: follow the one input that depends on the
    parameters down to the first model-like node (a layer or an activation)."""
    node, memo = root, {}
    for _ in range(64):
        node = strip_views(node)
        if node is None:
            return None
        name = node_name(node)
        if name in _MODEL_NODES:
            return node
        if name == "AddBackward0":
            sides = [strip_views(n) for n, _ in node.next_functions[:2]]
            if any(s is not None and node_name(s) == "MmBackward0" for s in sides):
                return node
        deps = [n for n, _ in node.next_functions if depends_on_params(n, memo)]
        if len(deps) != 1:
            return None
        node = deps[0]
    return None
