"""Read a loss's autograd graph: the model, the loss, the batch and the predictions.

Why the graph: raw-tensor training code (S1, S3, S4) has no ``nn.Module`` to inspect,
but every loss carries the computation that produced it. Walking ``loss.grad_fn``
*before* ``backward`` frees the saved tensors gives

- the trained tensors (``AccumulateGrad.variable``),
- a neutral ``dense_stack`` description (matmul / addmm + bias + activation layers),
- the batch ``X`` the first layer saw (``MmBackward0._saved_self`` / ``AddmmBackward0._saved_mat1``),
- the loss: torch's loss nodes (``MseLossBackward0`` ...) or a hand-written squared
  error (``sum``/``mean`` of ``pow``/``mul`` of a ``sub``, divided by constants),
- the predictions, read from a saved tensor or recomputed from the last layer's saved
  input with the very op the user ran (so the values are bit-identical).

Anything outside that vocabulary yields ``{"kind": "unsupported", "reason": ...}`` so the
checker says "cannot check" instead of guessing. Only this module knows node names.
"""
from __future__ import annotations

import torch

from tracer.errors import UnsupportedModel

_VIEWS = {"ViewBackward0", "ReshapeAliasBackward0", "UnsafeViewBackward0", "SqueezeBackward0",
          "SqueezeBackward1", "SqueezeBackward2", "UnsqueezeBackward0", "CloneBackward0"}
_ACTS = {"ReluBackward0": "relu", "SigmoidBackward0": "sigmoid", "TanhBackward0": "tanh",
         "SoftmaxBackward0": "softmax"}
_REDUCTION = {0: "none", 1: "mean", 2: "sum"}


def _name(node) -> str:
    return type(node).__name__


def _strip(node):
    while node is not None and _name(node) in _VIEWS:
        node = node.next_functions[0][0]
    return node


def _depends_on_params(node, _memo=None) -> bool:
    """True if some AccumulateGrad lies below ``node`` (the prediction side)."""
    if node is None:
        return False
    memo = {} if _memo is None else _memo
    key = id(node)
    if key in memo:
        return memo[key]
    memo[key] = False
    if hasattr(node, "variable"):
        memo[key] = True
        return True
    out = any(_depends_on_params(n, memo) for n, _ in node.next_functions)
    memo[key] = out
    return out


def leaves(loss) -> list:
    """The leaf tensors that receive gradients from ``loss``, in graph order (deduplicated)."""
    out, seen, stack, visited = [], set(), [loss.grad_fn], set()
    while stack:
        node = stack.pop()
        if node is None or id(node) in visited:
            continue
        visited.add(id(node))
        var = getattr(node, "variable", None)
        if var is not None:
            if id(var) not in seen:
                seen.add(id(var))
                out.append(var)
            continue
        stack.extend(n for n, _ in reversed(node.next_functions))
    return out


class Graph:
    """What one loss's graph says. Built by :func:`analyze`; all tensors detached.

    Attributes: ``loss`` (neutral spec or None), ``layers`` (list of layer dicts holding
    tensors: ``weight``, ``bias`` (tensor, or None), ``bias_const`` (True when the bias is
    a tensor that receives no gradient), ``transpose``, ``activation``), ``x`` (the
    batch the first layer saw), ``pred`` (a zero-argument function returning the
    predictions), ``target`` (the loss's saved target or None), ``reason`` (why the
    model is unsupported, or None), ``loss_reason``.
    """

    def __init__(self):
        self.loss = None
        self.loss_reason = None
        self.layers = []
        self.x = None
        self.pred = None
        self.target = None
        self.reason = None
        self.pred_node = None
        self.diff = None        # hand-written loss: (saved pred - target, pred side) to rebuild targets


def analyze(loss, const_args=None, const_by_pos=None, candidates=None) -> Graph:
    """Walk ``loss.grad_fn`` (before backward) and describe model, loss, batch and predictions.

    ``const_args`` maps ``id(grad_fn)`` -> the tensor arguments of the op that made it
    (captured during the first forward pass) so that a bias that receives no gradient
    (S4's ``b1``) can still be named and read. Without that capture, ``candidates`` (a
    function returning tensors from the user's frames) is searched for a tensor that
    reproduces the layer's saved output exactly.
    """
    g = Graph()
    root = loss.grad_fn
    try:
        pred_node, g.loss, pred_fn, g.target = _parse_loss(root, g)
    except UnsupportedModel as exc:
        g.loss_reason = str(exc)
        pred_node, pred_fn = _guess_pred_node(root), None
    g.pred_node = pred_node
    if pred_node is None:
        g.reason = "no prediction found in the loss's graph"
        return g
    holder = []
    try:
        layers, x, last = _parse_model(pred_node, const_args or {}, const_by_pos or {}, holder, candidates)
        g.layers, g.x = layers, x
    except UnsupportedModel as exc:
        g.reason = str(exc)
        last = holder[0] if holder else None
    if pred_fn is None and last is not None:
        pred_fn = last
    g.pred = pred_fn
    return g


# ----------------------------------------------------------------------- loss
def _pred_side(node):
    """Index of the input of a two-input node that carries the model (or raise)."""
    nfs = [n for n, _ in node.next_functions[:2]]
    if len(nfs) == 2 and (nfs[0] is None) != (nfs[1] is None):      # the usual case: a constant target
        return 0 if nfs[0] is not None else 1
    sides = [i for i, n in enumerate(nfs) if _depends_on_params(n)]
    if len(sides) != 1:
        raise UnsupportedModel(f"{_name(node)}: expected exactly one input that depends on the parameters")
    return sides[0]


def _parse_loss(root, g):
    """(pred_node, spec, pred value fn or None, target tensor or None)."""
    factor = 1.0
    reduce = None
    node = root
    while True:
        name = _name(node)
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
        elif name in _VIEWS:
            node = node.next_functions[0][0]
        else:
            break
        if node is None:
            raise UnsupportedModel("loss does not depend on the parameters")
    name = _name(node)
    torch_red = None
    if name in ("MseLossBackward0", "BinaryCrossEntropyBackward0", "BinaryCrossEntropyWithLogitsBackward0"):
        side = _pred_side(node)
        saved = (node._saved_self, node._saved_target)
        pred_t, target_t = saved[side].detach(), saved[1 - side].detach()
        torch_red = _REDUCTION.get(int(node._saved_reduction), "mean")
        base = {"MseLossBackward0": "mse", "BinaryCrossEntropyBackward0": "bce",
                "BinaryCrossEntropyWithLogitsBackward0": "bce_logits"}[name]
        if base == "bce_logits" and (node._saved_weight is not None or node._saved_pos_weight is not None):
            raise UnsupportedModel("BCEWithLogitsLoss with weight or pos_weight")
        if base == "bce" and node._saved_weight is not None:
            raise UnsupportedModel("BCELoss with weight")
        pred_node = node.next_functions[side][0]
        spec = _spec(base, torch_red, reduce, factor, row_wise=False)
        return pred_node, spec, (lambda t=pred_t: t), target_t
    if name in ("HuberLossBackward0", "SmoothL1LossBackward0"):
        side = _pred_side(node)
        saved = (node._saved_self, node._saved_target)
        pred_t, target_t = saved[side].detach(), saved[1 - side].detach()
        torch_red = _REDUCTION.get(int(node._saved_reduction), "mean")
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
    if name == "NllLossBackward0":
        if node._saved_weight is not None:
            raise UnsupportedModel("CrossEntropyLoss/NLLLoss with class weights")
        inner = _strip(node.next_functions[0][0])
        if inner is None or _name(inner) != "LogSoftmaxBackward0":
            raise UnsupportedModel("NLLLoss on something other than log_softmax")
        torch_red = _REDUCTION.get(int(node._saved_reduction), "mean")
        target_t = node._saved_target.detach()
        pred_node = inner.next_functions[0][0]
        spec = _spec("scce_logits", torch_red, reduce, factor, row_wise=True)
        return pred_node, spec, None, target_t
    # hand-written: pow(d, 2) | d * d | abs(d), d = pred - y
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
    node = _strip(node)
    if node is None or _name(node) not in ("SubBackward0", "AddBackward0"):
        raise UnsupportedModel("hand-written loss that is not a function of (prediction - target)")
    if abs(float(node._saved_alpha)) != 1.0:
        raise UnsupportedModel("hand-written loss with a scaled difference")
    side = _pred_side(node)
    pred_node = _strip(node.next_functions[side][0])
    saved = getattr(core, "_saved_self", None)
    if isinstance(saved, torch.Tensor) and _name(node) == "SubBackward0":
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


def settle_divide_by(spec: dict, n: int, m: int) -> dict:
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


_MODEL_NODES = {"AddmmBackward0", "MmBackward0", "MaximumBackward0", "ClampMinBackward0", *_ACTS}


def _guess_pred_node(root):
    """For a loss outside the vocabulary: follow the one input that depends on the
    parameters down to the first model-like node (a layer or an activation)."""
    node, memo = root, {}
    for _ in range(64):
        node = _strip(node)
        if node is None:
            return None
        name = _name(node)
        if name in _MODEL_NODES:
            return node
        if name == "AddBackward0":
            sides = [_strip(n) for n, _ in node.next_functions[:2]]
            if any(s is not None and _name(s) == "MmBackward0" for s in sides):
                return node
        deps = [n for n, _ in node.next_functions if _depends_on_params(n, memo)]
        if len(deps) != 1:
            return None
        node = deps[0]
    return None


# ---------------------------------------------------------------------- model
def _param_of(node):
    """(tensor, transposed) for a weight operand: AccumulateGrad, or TBackward0 of one."""
    node = node
    t = False
    if node is not None and _name(node) in ("TBackward0", "TransposeBackward0", "PermuteBackward0"):
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
            nf2 = _strip(nf)
            if nf2 is not None and _name(nf2) == "ExpandBackward0":
                var = getattr(nf2.next_functions[0][0], "variable", None)
        if var is None:
            raise UnsupportedModel(f"a layer adds {_name(nf)} where a bias was expected")
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
    name = _name(act_node)

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


def _parse_model(pred_node, const_args, const_by_pos, holder, candidates=None):
    """Layers from input to output, the batch X, and a function giving the predictions."""
    layers = []
    node = _strip(pred_node)
    act = "linear"
    act_node = None
    last_fn = None
    while node is not None:
        name = _name(node)
        if name in _ACTS or name == "MaximumBackward0" or name == "ClampMinBackward0":
            if act != "linear":
                raise UnsupportedModel("two activations in a row")
            if name == "MaximumBackward0":
                if node.next_functions[1][0] is not None or float(node._saved_other.max()) != 0.0 \
                        or node._saved_other.numel() != 1:
                    raise UnsupportedModel("torch.max of two tensors that is not relu")
                act = "relu"
            elif name == "ClampMinBackward0":
                if float(node._saved_min) != 0.0:
                    raise UnsupportedModel("clamp(min) other than 0")
                act = "relu"
            else:
                act = _ACTS[name]
            act_node = node
            node = _strip(node.next_functions[0][0])
            continue
        layer = {"activation": act, "bias": None, "bias_const": False}
        if name == "AddmmBackward0":
            if float(node._saved_alpha) != 1.0 or float(node._saved_beta) != 1.0:
                raise UnsupportedModel("addmm with alpha/beta other than 1")
            layer["weight"], layer["transpose"] = _param_of(node.next_functions[2][0])
            layer["bias"], layer["bias_const"] = _bias_of(
                node, 0, node, const_args, const_by_pos.get(len(layers)), candidates,
                _verifier(node, _operand(layer), True, act_node, addmm=True))
            inp = node._saved_mat1
            nxt = node.next_functions[1][0]
            mm = node

            def fn(mm=mm, b=layer["bias"], w=_operand(layer)):
                return torch.addmm(b, mm._saved_mat1, w())
        elif name in ("AddBackward0", "MmBackward0"):
            if name == "AddBackward0":
                if float(node._saved_alpha) != 1.0:
                    raise UnsupportedModel("add with alpha other than 1")
                sides = [_strip(n) for n, _ in node.next_functions[:2]]
                mm_idx = next((i for i, s in enumerate(sides) if s is not None and _name(s) == "MmBackward0"), None)
                if mm_idx is None:
                    raise UnsupportedModel("an addition that is not matmul + bias")
                mm = sides[mm_idx]
                layer["weight"], layer["transpose"] = _param_of(mm.next_functions[1][0])
                layer["bias"], layer["bias_const"] = _bias_of(
                    node, 1 - mm_idx, node, const_args, const_by_pos.get(len(layers)), candidates,
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
        else:
            raise UnsupportedModel(f"operation {name} in the model")
        if last_fn is None:
            last_fn = _with_activation(fn, act, act_node)
            holder.append(last_fn)
        layer["units"] = int(layer["weight"].shape[0] if layer["transpose"] else layer["weight"].shape[-1])
        layers.append(layer)
        act, act_node = "linear", None
        node = _strip(nxt)
        if node is None:
            x = inp.detach()
            layers.reverse()
            return layers, x, last_fn
    raise UnsupportedModel("empty model")


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
