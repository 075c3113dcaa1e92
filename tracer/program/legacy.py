"""Programs for traces that carry no ``meta["program"]``: 0.1.0's dense stacks and loss specs.

Why: traces saved by steptrace 0.1.0 (and hooks that describe a dense stack and a
loss spec rather than a program) must still be checked as before. Their
``meta["model"]`` (``{"kind": "dense_stack", "layers": [...]}``) and ``meta["loss"]``
(``{"name", "divide_by", ...}``, see docs/ARCHITECTURE.md) translate into program
nodes here, so the one engine checks them too. :func:`loss_tail` is also how the
checker tries candidate losses when a trace does not say which loss it used.
"""
from __future__ import annotations

from ..errors import TraceInputError, UnsupportedError
from .program import Input, Node, StepProgram

__all__ = ["from_dense_stack", "loss_tail", "LOSS_NAMES", "KERAS_EPSILON"]

KERAS_EPSILON = 1e-7
LOSS_NAMES = ("squared_error", "mse", "mae", "huber", "bce", "bce_logits", "cce", "cce_logits", "scce",
              "scce_logits", "cross_entropy")
_ACT = {"relu": "relu", "sigmoid": "sigmoid", "tanh": "tanh", "softplus": "softplus", "elu": "elu",
        "silu": "silu", "swish": "silu", "gelu": "gelu"}
_ROW = {"cce", "cce_logits", "scce", "scce_logits", "cross_entropy"}


def from_dense_stack(model: dict, n_inputs: int, n_targets: int, params: list[str]) -> StepProgram:
    """The program of a 0.1.0 ``dense_stack`` model (prediction only; add a loss with :func:`loss_tail`)."""
    if not isinstance(model, dict) or model.get("kind") != "dense_stack":
        kind = model.get("kind") if isinstance(model, dict) else None
        raise UnsupportedError((model or {}).get("reason") or f"model kind {kind!r}")
    layers = model.get("layers") or []
    if not layers:
        raise UnsupportedError("the model has no layers")
    nodes, a = [], "x"
    for i, layer in enumerate(layers, start=1):
        if layer.get("type", "dense") != "dense":
            raise UnsupportedError(f"layer type {layer.get('type')!r}")
        w, b = layer.get("weight"), layer.get("bias")
        for name in (w, b):
            if name is not None and name not in params:
                raise UnsupportedError(f"layer parameter {name!r} was not recorded (recorded: {params})")
        label = f"layer {i}"
        if layer.get("transpose"):
            nodes.append(Node(f"{w}.T", "transpose", [w], {"dim0": -2, "dim1": -1}, label=label))
            w = f"{w}.T"
        z = f"z{i}"
        nodes.append(Node(z if not b else f"x{i}@W", "matmul", [a, w], label=label))
        if b:
            nodes.append(Node(z, "add", [f"x{i}@W", b], label=label))
        act = layer.get("activation") or "linear"
        out = f"a{i}"
        if act in ("linear", None, "identity"):
            out = z
        elif act == "maximum0":
            nodes.append(Node(out, "maximum", [z, 0.0], label=label))
        elif act == "softmax":
            nodes.append(Node(out, "softmax", [z], {"dim": -1}, label=label))
        elif act in _ACT:
            nodes.append(Node(out, _ACT[act], [z], label=label))
        else:
            raise UnsupportedError(f"activation {act!r}")
        a = out
    if len(a) and a != "x":
        nodes.append(Node("y_pred", "identity", [a]))
    # a vector weight gives one prediction per row, compared with a per-row target
    flat = bool(model.get("flat_output")) and n_targets == 1
    inputs = [Input("x", "inputs", shape=[n_inputs]), Input("y", "targets", shape=[] if flat else [n_targets])]
    return StepProgram(inputs=inputs, params=list(params), nodes=nodes,
                       outputs={"prediction": "y_pred", "target": "y"})


def loss_tail(spec: dict, pred: str, target: str, n_outputs: int, prefix: str = "loss") -> list[Node]:
    """Nodes computing a 0.1.0 loss spec from ``pred`` and ``target``; the last is named ``prefix``.

    The total is the sum of the elementwise terms divided by ``divide_by`` (``"n"``:
    batch rows, ``"m"``: outputs per row, numbers), as 0.1.0 defined it.
    """
    if not isinstance(spec, dict) or spec.get("name") not in LOSS_NAMES:
        raise UnsupportedError(f"loss {spec.get('name') if isinstance(spec, dict) else spec!r}: steptrace has "
                               f"formulas for {', '.join(LOSS_NAMES)}")
    name = "scce_logits" if spec["name"] == "cross_entropy" else spec["name"]
    conv = spec.get("convention") or "keras"
    nodes: list[Node] = []

    def add(part, op, args, **attrs):
        nodes.append(Node(f"{prefix}/{part}", op, list(args), attrs, group=prefix))
        return f"{prefix}/{part}"

    y = target
    m = int(n_outputs)
    if name in ("scce", "scce_logits"):
        cls = add("class", "squeeze", [target], dims=[-1])
        y = add("onehot", "one_hot", [cls], num_classes=m)
        name = name[1:]
    ls = float(spec.get("label_smoothing") or 0.0)
    if ls:
        k = 0.5 if name.startswith("bce") else 1.0 / m
        y = add("smoothed", "add", [add("(1-ls)y", "mul", [y, 1.0 - ls]), ls * k])
    eps = float(spec.get("epsilon") or KERAS_EPSILON)
    term = _term(name, conv, eps, pred, y, spec, add)
    return nodes + _divide(spec, name, conv, term, m, prefix)


def _term(name, conv, eps, p, y, spec, add):
    if name in ("squared_error", "mse"):
        return add("term", "squared_error", [p, y])
    if name == "mae":
        return add("term", "absolute_error", [p, y])
    if name == "huber":
        return add("term", "huber_term", [p, y], delta=float(spec.get("delta", 1.0)))
    if name == "bce_logits":
        return add("term", "bce_logits_term", [p, y])
    if name == "bce":
        if conv == "torch":
            return add("term", "bce_term", [p, y])
        q = add("clipped", "clamp", [p], min=eps, max=1 - eps) if conv == "keras" else p
        pos = add("y*log(p)", "mul", [y, add("log(p)", "log", [q])])
        neg = add("(1-y)*log(1-p)", "mul", [add("1-y", "sub", [1.0, y]),
                                             add("log(1-p)", "log", [add("1-p", "sub", [1.0, q])])])
        return add("term", "neg", [add("sum", "add", [pos, neg])])
    if name == "cce_logits":
        logp = add("log_softmax", "log_softmax", [p], dim=-1)
        return add("term", "neg", [_zero_where_no_target(add("y*logp", "mul", [y, logp]), y, add)])
    if name == "cce":
        q = p
        if conv == "keras":
            q = add("normalised", "div", [p, add("row_sum", "sum", [p], dims=[-1], keepdim=True)])
            q = add("clipped", "clamp", [q], min=eps, max=1 - eps)
        return add("term", "neg", [_zero_where_no_target(add("y*log(p)", "mul", [y, add("log(p)", "log", [q])]),
                                                         y, add)])
    raise UnsupportedError(f"loss {name!r}")   # pragma: no cover - guarded by LOSS_NAMES


def _zero_where_no_target(term, y, add):
    """0 * log(0) is 0 by both frameworks' convention."""
    return add("masked", "where", [add("has_target", "ne", [y, 0.0]), term, 0.0])


def _divide(spec, name, conv, term, m, prefix):
    div = spec.get("divide_by")
    if div is None:
        red = (spec.get("reduction") or "mean").lower()
        row = name in _ROW or name in ("cce", "cce_logits")
        if name == "squared_error":
            div = []
        elif red in ("mean", "sum_over_batch_size", "auto", "elementwise_mean"):
            div = ["n"] if row else ["n", "m"]
        elif red == "sum":
            div = [] if (row or conv == "torch") else ["m"]
        else:
            raise UnsupportedError(f"loss reduction {spec.get('reduction')!r}")
    const = 1.0
    per_row = False
    for f in div:
        if f == "n":
            per_row = True
        elif f == "m":
            const *= m
        elif isinstance(f, (int, float)) and not isinstance(f, bool) and f > 0:
            const *= float(f)
        elif isinstance(f, (list, tuple)) and len(f) == 2 and f[0] == "const":
            const *= float(f[1])
        else:
            raise TraceInputError(f'loss spec "divide_by": factor {f!r} is not a number, "n" or "m"')
    out = []
    if per_row:        # "n": the number of batch rows; terms seen as (rows, the rest)
        flat = Node(f"{prefix}/by_row", "reshape", [term], {"shape": [0, -1]}, group=prefix)
        rows = Node(f"{prefix}/row_total", "sum", [flat.name], {"dims": [-1]}, group=prefix)
        total = Node(f"{prefix}/mean_over_rows", "mean", [rows.name], group=prefix)
        out += [flat, rows, total]
    else:
        total = Node(f"{prefix}/total", "sum", [term], group=prefix)
        out.append(total)
    out.append(Node(prefix, "div", [total.name, const], group=prefix) if const != 1.0 else
               Node(prefix, "identity", [total.name], group=prefix))
    return out
