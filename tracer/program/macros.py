"""Composite operations (a layer, a loss) that expand into primitive ones.

Why macros: a user reads ``loss = cross_entropy(logits, y, label_smoothing=0.1)``,
and the framework's definition of that line (log_softmax, one-hot targets, the
smoothing, ``ignore_index``, class weights, the mean's denominator) is a handful of
primitive ops. Writing each composite once as an expansion keeps one engine: the
checker, the magnitudes, explanations and the workbook only ever see primitives,
while ``explain`` can still show the line as the user wrote it (every expanded node
keeps the composite's name as its ``group``).

The formulas are the frameworks' own (torch 2.13 ``torch/nn/functional.py`` and
``aten/src/ATen/native/Loss*.cpp``): ``mean`` divides by the number of elements,
except the class-target losses, which divide by the summed weight of the targets
that are not ignored (the number of such targets when there are no weights).
"""
from __future__ import annotations

import numbers

import numpy as np

from ..errors import TraceInputError
from .registry import MISSING, Op, register

__all__ = ["Macro", "expand_node"]

REDUCTIONS = ("mean", "sum", "none")


class Macro(Op):
    """An op defined by :meth:`expansion` into primitive nodes (never evaluated itself)."""

    def expansion(self, name: str, args: list, attrs: dict) -> list[dict]:
        raise NotImplementedError

    def forward(self, xs: list[np.ndarray], attrs: dict) -> np.ndarray:  # pragma: no cover - expanded first
        raise TypeError(f"macro {self.name!r} must be expanded before evaluation")


def _red(attrs, where):
    if attrs.get("reduction") not in REDUCTIONS:
        raise TraceInputError(f"{where}reduction must be one of {REDUCTIONS}, got {attrs.get('reduction')!r}")
    return attrs


class _Nodes:
    """Builds the expansion's node list with names ``<name>/<part>``."""

    def __init__(self, name):
        self.name = name
        self.nodes = []

    def add(self, part, op, args, **attrs):
        node = {"name": f"{self.name}/{part}" if part else self.name, "op": op, "args": list(args),
                "attrs": attrs, "group": self.name}
        self.nodes.append(node)
        return node["name"]

    def reduce(self, term, reduction):
        if reduction == "mean":
            return self.add("", "mean", [term])
        if reduction == "sum":
            return self.add("", "sum", [term])
        return self.add("", "identity", [term])


class Linear(Macro):
    name, arity, doc = "linear", (2, 3), "x @ W.T + b (torch.nn.functional.linear)"

    def expansion(self, name: str, args: list, attrs: dict) -> list[dict]:
        n = _Nodes(name)
        wt = n.add("W.T", "transpose", [args[1]], dim0=-2, dim1=-1)
        if len(args) == 2:
            n.add("", "matmul", [args[0], wt])
        else:
            mm = n.add("x@W.T", "matmul", [args[0], wt])
            n.add("", "add", [mm, args[2]])
        return n.nodes


class _ElementLoss(Macro):
    arity = (2, 3)
    term = ""
    term_attrs: tuple = ()

    def normalise(self, attrs: dict, where: str) -> dict:
        return _red(attrs, where)

    def expansion(self, name: str, args: list, attrs: dict) -> list[dict]:
        n = _Nodes(name)
        extra = {k: attrs[k] for k in self.term_attrs}
        t = n.add("term", self.term, args[:2], **extra)
        if len(args) == 3:                       # per-element weight (torch's weight=)
            t = n.add("weighted", "mul", [t, args[2]])
        n.reduce(t, attrs["reduction"])
        return n.nodes


class MSELoss(_ElementLoss):
    name, term, doc = "mse_loss", "squared_error", "mean/sum of (x - y)^2"
    defaults = {"reduction": "mean"}


class L1Loss(_ElementLoss):
    name, term, doc = "l1_loss", "absolute_error", "mean/sum of |x - y|"
    defaults = {"reduction": "mean"}


class HuberLoss(_ElementLoss):
    name, term, term_attrs, doc = "huber_loss", "huber_term", ("delta",), "Huber loss (torch.nn.HuberLoss)"
    defaults = {"reduction": "mean", "delta": 1.0}


class SmoothL1Loss(_ElementLoss):
    name, term, term_attrs, doc = "smooth_l1_loss", "smooth_l1_term", ("beta",), "torch.nn.SmoothL1Loss"
    defaults = {"reduction": "mean", "beta": 1.0}


class BCELoss(_ElementLoss):
    name, term, doc = "binary_cross_entropy", "bce_term", "torch BCELoss on probabilities"
    defaults = {"reduction": "mean"}


class BCEWithLogits(Macro):
    name, arity = "binary_cross_entropy_with_logits", (2, 4)
    doc = "torch BCEWithLogitsLoss (optional weight, pos_weight as arguments 3 and 4)"
    defaults = {"reduction": "mean", "pos_weight": None, "has_weight": False}

    def normalise(self, attrs: dict, where: str) -> dict:
        if attrs["pos_weight"] is not None and not isinstance(attrs["pos_weight"], numbers.Real):
            raise TraceInputError(f"{where}pos_weight must be a number (a tensor goes as argument 4)")
        return _red(attrs, where)

    def expansion(self, name: str, args: list, attrs: dict) -> list[dict]:
        n = _Nodes(name)
        x, t = args[0], args[1]
        weight = args[2] if attrs["has_weight"] and len(args) > 2 else None
        pos = args[3] if len(args) > 3 else (args[2] if len(args) > 2 and not attrs["has_weight"] else None)
        if pos is None:
            term = n.add("term", "bce_logits_term", [x, t], pos_weight=attrs["pos_weight"])
        else:   # (1 - t) x + (1 + (pw - 1) t) (log(1 + exp(-|x|)) + max(-x, 0))
            one_m_t = n.add("1-t", "sub", [1.0, t])
            lin = n.add("(1-t)x", "mul", [one_m_t, x])
            pw1 = n.add("pw-1", "sub", [pos, 1.0])
            coef = n.add("coef", "add", [1.0, n.add("(pw-1)t", "mul", [pw1, t])])
            ax = n.add("|x|", "abs", [x])
            soft = n.add("log1p(exp(-|x|))", "log1p", [n.add("exp(-|x|)", "exp", [n.add("-|x|", "neg", [ax])])])
            relu = n.add("max(-x,0)", "relu", [n.add("-x", "neg", [x])])
            term = n.add("term", "add", [lin, n.add("coef*soft", "mul", [coef, n.add("soft", "add", [soft, relu])])])
        if weight is not None:
            term = n.add("weighted", "mul", [term, weight])
        n.reduce(term, attrs["reduction"])
        return n.nodes


class CrossEntropy(Macro):
    """torch ``cross_entropy`` (logits) and ``nll_loss`` (log-probabilities)."""

    name, arity = "cross_entropy", (2, 3)
    doc = "softmax cross-entropy with class-index or probability targets, weights, ignore_index, smoothing"
    defaults = {"reduction": "mean", "num_classes": MISSING, "class_dim": 1, "target": "index",
                "ignore_index": -100, "label_smoothing": 0.0}
    log_input = False

    def normalise(self, attrs: dict, where: str) -> dict:
        if attrs["target"] not in ("index", "prob"):
            raise TraceInputError(f"{where}target must be 'index' or 'prob', got {attrs['target']!r}")
        ls = attrs["label_smoothing"]
        if not isinstance(ls, numbers.Real) or not 0 <= ls <= 1:
            raise TraceInputError(f"{where}label_smoothing must be in [0, 1], got {ls!r}")
        if not isinstance(attrs["num_classes"], int) or attrs["num_classes"] < 1:
            raise TraceInputError(f"{where}num_classes must be a positive integer, got {attrs['num_classes']!r}")
        return _red(attrs, where)

    def expansion(self, name: str, args: list, attrs: dict) -> list[dict]:
        n = _Nodes(name)
        x, t = args[0], args[1]
        w = args[2] if len(args) > 2 else None
        c, cd, eps = attrs["num_classes"], attrs["class_dim"], float(attrs["label_smoothing"])
        logp = x if self.log_input else n.add("log_softmax", "log_softmax", [x], dim=cd)
        logp_last = n.add("logp", "movedim", [logp], source=cd, destination=-1) if cd not in (-1,) else logp
        if attrs["target"] == "index":
            onehot = n.add("onehot", "one_hot", [t], num_classes=c, ignore_index=attrs["ignore_index"])
            mask = n.add("kept", "ne", [t, attrs["ignore_index"]])
            coef = onehot
            if eps:
                coef = n.add("smoothed", "add", [n.add("(1-eps)onehot", "mul", [onehot, 1.0 - eps]),
                                                n.add("eps/C", "mul", [n.add("kept[...,None]", "unsqueeze", [mask],
                                                                             dim=-1), eps / c])])
        else:
            mask = None
            coef = n.add("target", "movedim", [t], source=cd, destination=-1) if cd not in (-1,) else t
            if eps:
                coef = n.add("smoothed", "add", [n.add("(1-eps)t", "mul", [coef, 1.0 - eps]), eps / c])
        if w is not None:
            coef = n.add("weighted", "mul", [coef, w])
        term = n.add("term", "neg", [n.add("sum", "sum", [n.add("coef*logp", "mul", [coef, logp_last])],
                                           dims=[-1])])
        red = attrs["reduction"]
        if red == "mean" and attrs["target"] == "index":
            if w is None:
                denom = n.add("count", "sum", [mask])
            else:
                safe = n.add("t_safe", "where", [mask, t, 0])
                denom = n.add("weight_sum", "sum", [n.add("w[t]", "mul", [n.add("w_t", "take", [w, safe]), mask])])
            n.add("", "div", [n.add("total", "sum", [term]), denom])
        else:
            n.reduce(term, red)
        return n.nodes


class NLLLoss(CrossEntropy):
    name = "nll_loss"
    doc = "negative log-likelihood of log-probabilities (torch.nn.NLLLoss)"
    log_input = True


for _cls in (Linear, MSELoss, L1Loss, HuberLoss, SmoothL1Loss, BCELoss, BCEWithLogits, CrossEntropy, NLLLoss):
    register(_cls())


def expand_node(node: dict, op: Op) -> list[dict]:
    """The primitive nodes of ``node`` (itself when ``op`` is not a macro)."""
    if not isinstance(op, Macro):
        return [node]
    return op.expansion(node["name"], list(node["args"]), dict(node["attrs"]))
