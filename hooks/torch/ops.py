"""The translation table: torch functions -> step-program operations (elementwise, activations, shapes).

Why a table (as BackPACK maps module types to extensions): the checker must never
guess, so each torch function the user can call maps to exactly the registry ops that
compute the same thing, with its arguments (``alpha``, ``approximate``,
``negative_slope``, ``threshold``, ``dim``, ``keepdim``...) carried over; a function
that is not here, or an argument a rule does not model, is ``unsupported`` (the
checker then says "cannot check: <op> at <file:line>"). Tensor methods, ``torch.*``
functions and ``torch.nn.functional`` share a rule when they share a meaning
(``x.relu()``, ``torch.relu(x)``, ``F.relu(x)``). Losses, linear algebra and indexing
are in :mod:`hooks.torch.ops_nn`.

A rule takes the :class:`hooks.torch.emit.Emitter` (positioned on the record) and
returns the name of the node holding the record's result.

``x ** 2`` is emitted as ``square``: the same number (torch special-cases it as
``x * x``) and a rounding magnitude the registry can compute for negative ``x``
(``pow``'s is NaN there, which makes a correct gradient fail its tolerance).
"""
from __future__ import annotations

from typing import Callable

import torch

from .emit import Emitter, Unsupported

__all__ = ["TABLE", "rule"]

TABLE: dict[str, Callable[[Emitter], str]] = {}


def rule(*names: str) -> Callable[[Callable[[Emitter], str]], Callable[[Emitter], str]]:
    """Register a translation rule under one or more torch function names."""
    def deco(fn):
        for n in names:
            TABLE[n] = fn
        return fn
    return deco


def _inplace(*names: str) -> tuple[str, ...]:
    """Each name with its in-place forms (``add`` -> ``add_``, ``__iadd__``)."""
    out = []
    for n in names:
        out += [n, n + "_"]
    return tuple(out)


# ----------------------------------------------------------------- arithmetic
@rule(*_inplace("add"), "__add__", "__iadd__", "__radd__")
def _add(e: Emitter) -> str:
    a = e.bind(("input", "other", "alpha"), alpha=1)
    return _plus(e, a["input"], a["other"], a["alpha"], "add")


@rule(*_inplace("sub"), "subtract", "__sub__", "__isub__")
def _sub(e: Emitter) -> str:
    a = e.bind(("input", "other", "alpha"), alpha=1)
    return _plus(e, a["input"], a["other"], a["alpha"], "sub")


@rule("rsub")
def _rsub(e: Emitter) -> str:
    a = e.bind(("input", "other", "alpha"), alpha=1)
    return _plus(e, a["other"], a["input"], a["alpha"], "sub")


@rule("__rsub__")
def _rsub_op(e: Emitter) -> str:
    a = e.bind(("self", "other"))
    return e.emit("sub", [e.value(a["other"]), e.value(a["self"])])


def _plus(e, x, y, alpha, op):
    """``x op alpha * y`` (``rsub`` swaps x and y before calling)."""
    if alpha != 1:
        scaled = e.emit("mul", [e.value(y), e.value(alpha)], bind=None)
        return e.emit(op, [e.value(x), scaled])
    return e.emit(op, [e.value(x), e.value(y)])


def _binary(op: str, swap: bool = False):
    def fn(e: Emitter) -> str:
        rec = e.record
        if len(rec.args) + len(rec.kwargs) != 2:
            raise Unsupported(f"{len(rec.args) + len(rec.kwargs)} arguments")
        x, y = (list(rec.args) + list(rec.kwargs.values()))[:2]
        if swap:
            x, y = y, x
        return e.emit(op, [e.value(x), e.value(y)])
    return fn


for _names, _op in ((_inplace("mul") + ("multiply", "__mul__", "__imul__", "__rmul__"), "mul"),
                    (("true_divide", "true_divide_", "__truediv__", "__itruediv__", "__div__", "__idiv__"), "div"),
                    (("maximum", "fmax"), "maximum"), (("minimum", "fmin"), "minimum"),
                    (_inplace("eq") + ("__eq__",), "eq"), (_inplace("ne") + ("__ne__", "not_equal"), "ne"),
                    (_inplace("gt") + ("__gt__", "greater"), "gt"), (_inplace("ge") + ("__ge__", "greater_equal"), "ge"),
                    (_inplace("lt") + ("__lt__", "less"), "lt"), (_inplace("le") + ("__le__", "less_equal"), "le")):
    for _n in _names:
        TABLE[_n] = _binary(_op)
for _n, _op in (("__rtruediv__", "div"), ("__rdiv__", "div"), ("__rpow__", "pow")):
    TABLE[_n] = _binary(_op, swap=True)


@rule(*_inplace("pow"), "__pow__", "__ipow__", "float_power")
def _pow(e: Emitter) -> str:
    """``x ** y``; ``x ** 2`` is ``square`` (torch computes it as ``x * x``, and the registry's
    ``pow`` has no rounding magnitude for a negative base, see the module docstring)."""
    a = e.bind(("input", "exponent"))
    x, y = a["input"], a["exponent"]
    if isinstance(y, (int, float)) and not isinstance(y, bool) and float(y) == 2.0 and isinstance(x, torch.Tensor):
        return e.emit("square", [e.value(x)])
    return e.emit("pow", [e.value(x), e.value(y)])


@rule(*_inplace("div"), "divide")
def _div(e: Emitter) -> str:
    a = e.bind(("input", "other", "rounding_mode"), rounding_mode=None)
    if a["rounding_mode"] is not None:
        raise Unsupported(f"rounding_mode={a['rounding_mode']!r}")
    return e.emit("div", [e.value(a["input"]), e.value(a["other"])])


@rule("max", "min")
def _max(e: Emitter) -> str:
    """``torch.max(a, b)`` of two tensors is ``maximum``; ``max(x)``/``max(x, dim)`` are reductions."""
    rec = e.record
    other = rec.args[1] if len(rec.args) > 1 else rec.kwargs.get("other")
    if len(rec.args) + len(rec.kwargs) == 2 and isinstance(other, torch.Tensor):
        op = "maximum" if rec.name == "max" else "minimum"
        return e.emit(op, [e.value(rec.args[0]), e.value(other)])
    raise Unsupported(f"torch.{rec.name} as a reduction (max over a dimension)")


@rule("where")
def _where(e: Emitter) -> str:
    a = e.bind(("condition", "input", "other"))
    return e.emit("where", [e.value(a["condition"]), e.value(a["input"]), e.value(a["other"])])


# ---------------------------------------------------------------- elementwise
def _unary(op: str, **attrs):
    def fn(e: Emitter) -> str:
        a = e.bind(("input", "inplace"), inplace=False)
        return e.emit(op, [e.value(a["input"])], dict(attrs))
    return fn


for _names, _op in ((_inplace("neg") + ("negative", "__neg__"), "neg"), (_inplace("exp"), "exp"),
                    (_inplace("log"), "log"), (_inplace("sqrt"), "sqrt"), (_inplace("rsqrt"), "rsqrt"),
                    (_inplace("abs") + ("absolute", "__abs__"), "abs"), (_inplace("square"), "square"),
                    (_inplace("reciprocal"), "reciprocal"), (_inplace("sin"), "sin"), (_inplace("cos"), "cos"),
                    (_inplace("log1p"), "log1p"), (_inplace("expm1"), "expm1"), (_inplace("erf"), "erf"),
                    (_inplace("floor"), "floor"), (_inplace("sign"), "sign"), (_inplace("sigmoid"), "sigmoid"),
                    (_inplace("tanh"), "tanh"), (_inplace("relu"), "relu"), (_inplace("silu"), "silu"),
                    (_inplace("selu"), "selu")):
    for _n in _names:
        TABLE[_n] = _unary(_op)


@rule("gelu")
def _gelu(e: Emitter) -> str:
    a = e.bind(("input", "approximate"), approximate="none")
    return e.emit("gelu", [e.value(a["input"])], {"approximate": a["approximate"]})


@rule(*_inplace("leaky_relu"))
def _leaky(e: Emitter) -> str:
    a = e.bind(("input", "negative_slope", "inplace"), negative_slope=0.01, inplace=False)
    return e.emit("leaky_relu", [e.value(a["input"])], {"alpha": float(a["negative_slope"])})


@rule(*_inplace("elu"))
def _elu(e: Emitter) -> str:
    a = e.bind(("input", "alpha", "inplace"), alpha=1.0, inplace=False)
    return e.emit("elu", [e.value(a["input"])], {"alpha": float(a["alpha"])})


@rule("softplus")
def _softplus(e: Emitter) -> str:
    a = e.bind(("input", "beta", "threshold"), beta=1.0, threshold=20.0)
    return e.emit("softplus", [e.value(a["input"])], {"beta": float(a["beta"]), "threshold": float(a["threshold"])})


@rule(*_inplace("clamp"), *_inplace("clip"))
def _clamp(e: Emitter) -> str:
    a = e.bind(("input", "min", "max"), min=None, max=None)
    return e.emit("clamp", [e.value(a["input"])], {"min": _bound(a["min"]), "max": _bound(a["max"])})


@rule(*_inplace("clamp_min"))
def _clamp_min(e: Emitter) -> str:
    a = e.bind(("input", "min"))
    return e.emit("clamp", [e.value(a["input"])], {"min": _bound(a["min"]), "max": None})


@rule(*_inplace("clamp_max"))
def _clamp_max(e: Emitter) -> str:
    a = e.bind(("input", "max"))
    return e.emit("clamp", [e.value(a["input"])], {"min": None, "max": _bound(a["max"])})


def _bound(v):
    """A clamp bound: a number (a 0-d untracked tensor counts), else unsupported."""
    if v is None:
        return None
    if isinstance(v, torch.Tensor):
        if v.dim() != 0 or v.requires_grad:
            raise Unsupported("clamp with tensor bounds")
        v = v.item()
    return float(v)


# -------------------------------------------------------- identities and casts
@rule("detach", "detach_")
def _detach(e: Emitter) -> str:
    return e.emit("detach", [e.value(e.record.args[0])])


@rule("data")
def _data(e: Emitter) -> str:
    return e.emit("detach", [e.value(e.record.args[0])])


@rule("contiguous", "clone", "requires_grad_", "retain_grad", "cpu", "cuda", "alias")
def _same(e: Emitter) -> str:
    return e.alias(e.record.out, e.record.args[0])


@rule("float", "double", "half", "bfloat16", "to", "type", "type_as", "long", "int", "bool", "short")
def _cast(e: Emitter) -> str:
    """dtype/device conversions: the value itself for floating results, a cast otherwise."""
    out = e.record.out
    if out.is_floating_point():
        return e.alias(out, e.record.args[0])
    kind = "bool" if out.dtype == torch.bool else "int"
    return e.emit("cast", [e.value(e.record.args[0])], {"dtype": kind})


@rule("dropout", "dropout_", "alpha_dropout", "feature_alpha_dropout", "dropout1d", "dropout2d",
      "dropout3d", "feature_dropout")
def _dropout(e: Emitter) -> str:
    a = e.bind(("input", "p", "training", "inplace"), p=0.5, training=True, inplace=False)
    if a["p"] == 0 or not a["training"]:
        return e.alias(e.record.out, a["input"])
    raise Unsupported(f"dropout with p={a['p']} while training (a random mask)")


@rule("one_hot")
def _one_hot(e: Emitter) -> str:
    """``F.one_hot(y, C)``: the registry's one_hot (0.0/1.0, the same numbers as torch's
    int64 0/1, so the usual ``.float()`` after it is the value itself)."""
    a = e.bind(("input", "num_classes"), num_classes=-1)
    c = int(a["num_classes"])
    if c < 0:
        c = int(e.record.out.shape[-1])       # -1: one more than the largest class in the batch
    return e.emit("one_hot", [e.value(a["input"])], {"num_classes": c})
