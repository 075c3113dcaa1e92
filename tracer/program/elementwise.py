"""Elementwise operations defined by sympy expressions: arithmetic, functions, activations.

Each op is one sympy expression in its argument symbols ``x``, ``y``, ``c`` (and its
numeric attributes). Its forward pass and derivatives are that expression and its
``sympy.diff`` lambdified to NumPy; its rounding magnitudes come from
:func:`tracer.program.symbolic.magnitude`; explanations and Excel formulas print the
same expressions. Broadcasting follows NumPy/torch on the per-step shapes.

Conventions at kinks are the frameworks': ``relu'(0) = 0``, ``|x|'(0) = 0``, clamp
passes the gradient on its closed interval, ``maximum`` splits a tie half and half
(torch's ``MaximumBackward0``; sympy's ``Heaviside(0) = 1/2``).
"""
from __future__ import annotations

import math

import numpy as np
import sympy as sp

from .scratch import empty
from ..errors import TraceInputError
from .batched import align, unbroadcast
from .kernels import hand_written
from .registry import MISSING, Op, register
from .symbolic import lambdify, magnitude, sigmoid, softplus

__all__ = ["Elementwise", "X", "Y", "C"]

X, Y, C = sp.symbols("x y c", real=True)
_MX, _MY, _MC = sp.symbols("m_x m_y m_c", nonnegative=True)
_G, _MG = sp.Symbol("g", real=True), sp.Symbol("m_g", nonnegative=True)


def _num(v, what, where):
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise TraceInputError(f"{where}{what}: expected a finite number, got {v!r}")
    return float(v)


class Elementwise(Op):
    """An op given by ``build(attrs) -> sympy expression`` in ``X`` (, ``Y``, ``C``).

    ``grads`` names the differentiable argument positions; ``backward`` optionally
    gives a framework's own backward formula per argument (an expression in the
    arguments), used instead of ``sympy.diff`` where the framework's backward is not
    the derivative of its forward (torch's BCE clamps differently in each direction).
    """

    def __init__(self, name, nargs, build, defaults=None, grads=None, fmt=None, doc="",
                 backward=None, check=None):
        self.name = name
        self.arity = nargs
        self.defaults = dict(defaults or {})
        self.differentiable = tuple(range(nargs)) if grads is None else tuple(grads)
        self._build = build
        self._fmt = fmt
        self._backward = backward
        self._check = check
        self.doc = doc
        self._cache: dict = {}

    def normalise(self, attrs: dict, where: str) -> dict:
        return self._check(attrs, where) if self._check else attrs

    # --------------------------------------------------------------- symbols
    @property
    def symbols(self) -> tuple[sp.Symbol, ...]:
        """The argument symbols, in order."""
        return (X, Y, C)[: self.arity]

    def expr(self, attrs: dict | None = None) -> sp.Expr:
        """The sympy expression with the attributes substituted."""
        return self._build(attrs or {k: v for k, v in self.defaults.items() if v is not MISSING})

    def derivative(self, i: int, attrs: dict) -> sp.Expr:
        """d expr / d argument ``i``: sympy.diff (or the framework's own backward formula)."""
        if self._backward is not None and self._backward(attrs)[i] is not None:
            return self._backward(attrs)[i]
        return sp.diff(self.expr(attrs), self.symbols[i])

    def _compiled(self, attrs):
        key = tuple(sorted(attrs.items()))
        hit = self._cache.get(key)
        if hit is not None:
            return hit
        syms = self.symbols
        msyms = (_MX, _MY, _MC)[: self.arity]
        e = self.expr(attrs)
        mag = magnitude(e, dict(zip(syms, msyms)))
        f = lambdify(syms, e)
        fm = lambdify(syms + msyms, mag, cse=True)
        d, dm = [], []
        for i in range(self.arity):
            if not self.can_differentate_safe(i):
                d.append(None)
                dm.append(None)
                continue
            de = self.derivative(i, attrs)
            gexpr = _G * de
            gm = magnitude(gexpr, {**dict(zip(syms, msyms)), _G: _MG})
            d.append(lambdify(syms, de))
            dm.append(lambdify(syms + msyms + (_G, _MG), gm, cse=True))
        hit = self._cache[key] = hand_written(self.name, attrs, f, fm, d, dm)
        return hit

    def can_differentate_safe(self, i: int) -> bool:
        return i in self.differentiable

    # --------------------------------------------------------------- numbers
    def forward(self, xs: list[np.ndarray], attrs: dict) -> np.ndarray:
        xs = align(*[_float(x) for x in xs])
        f = self._compiled(attrs)[0]
        shape = np.broadcast_shapes(*[x.shape for x in xs])
        ufunc = _UFUNCS.get(self.name)
        with np.errstate(all="ignore"):
            out = f(*xs) if ufunc is None else ufunc(*xs, out=empty(shape, np.result_type(*xs)))
        return _shaped(out, shape, _dtype(xs))

    def vjp(self, g: np.ndarray, xs: list[np.ndarray], out: np.ndarray, attrs: dict, need: list[bool]) -> list:
        raw = xs
        xs = align(*[_float(x) for x in xs])
        d = self._compiled(attrs)[2]
        res = []
        for i, x in enumerate(raw):
            if not need[i] or d[i] is None:
                res.append(None)
                continue
            with np.errstate(all="ignore"):
                dv = d[i](*xs)
                # a constant derivative (add, sub, a linear term): one pass, no array of it
                dv = g.dtype.type(dv) if np.ndim(dv) == 0 else _shaped(dv, g.shape, g.dtype)
                # times exactly 1 (add): g itself, bit for bit (nothing writes into a gradient); only
                # a C-contiguous g, as the product would be (a product reading it takes the same path)
                gi = g if np.ndim(dv) == 0 and dv == 1 and g.dtype.kind == "f" and g.flags.c_contiguous else \
                    np.multiply(g, dv, out=empty(np.broadcast_shapes(g.shape, np.shape(dv)), np.result_type(g, dv)))
            res.append(unbroadcast(gi, x))
        return res

    def fmag(self, ms: list[np.ndarray], xs: list[np.ndarray], out: np.ndarray, attrs: dict) -> np.ndarray:
        xs = align(*[_float(x) for x in xs])
        ms = align(*[_float(m) for m in ms])
        fm = self._compiled(attrs)[1]
        with np.errstate(all="ignore"):
            return _shaped(fm(*xs, *ms), out.shape, out.dtype)

    def bmag(self, gm: np.ndarray, g: np.ndarray, ms: list[np.ndarray], xs: list[np.ndarray], out: np.ndarray,
             attrs: dict, need: list[bool]) -> list:
        raw = xs
        xs = align(*[_float(x) for x in xs])
        ms = align(*[_float(m) for m in ms])
        dm = self._compiled(attrs)[3]
        res = []
        for i, x in enumerate(raw):
            if not need[i] or dm[i] is None:
                res.append(None)
                continue
            with np.errstate(all="ignore"):
                r = _shaped(dm[i](*xs, *ms, g, gm), g.shape, g.dtype)
            res.append(unbroadcast(r, x))
        return res

    def text(self, args: list, attrs: dict) -> str:
        if self._fmt:
            return self._fmt.format(*args, **attrs)
        return super().text(args, attrs)


#: ops whose lambdified form is one NumPy ufunc of the two arguments (``x + y`` prints as
#: ``x + y``): the same numbers, written into an array of the check's arena
_UFUNCS = {"add": np.add, "sub": np.subtract, "mul": np.multiply}


def _float(x):
    x = np.asarray(x)
    if x.dtype.kind in "biu":
        return x.astype(np.float64)
    return x


def _dtype(xs):
    kinds = [x.dtype for x in xs if x.dtype.kind == "f"]
    return np.result_type(*kinds) if kinds else np.float64


def _shaped(v, shape, dtype):
    v = np.asarray(v)
    if v.shape != tuple(shape):
        v = np.broadcast_to(v, shape)
    if v.dtype != dtype or not v.flags.writeable:
        v = v.astype(dtype)
    return v


def _def(name, nargs, build, **kw):
    return register(Elementwise(name, nargs, build, **kw))


def _c(v):
    """A numeric attribute as a sympy number (integers stay exact)."""
    if v is None:
        return None
    return sp.Integer(int(v)) if float(v).is_integer() else sp.Float(v, 17)


def _attr_num(*keys, optional=()):
    def check(attrs, where):
        for k in keys:
            if k in optional and attrs.get(k) is None:
                continue
            attrs[k] = _num(attrs[k], f"op attribute {k!r}", where)
        return attrs
    return check


# ------------------------------------------------------------------ arithmetic
_def("add", 2, lambda a: X + Y, fmt="{0} + {1}", doc="x + y")
_def("sub", 2, lambda a: X - Y, fmt="{0} - {1}", doc="x - y")
_def("mul", 2, lambda a: X * Y, fmt="{0} * {1}", doc="x * y")
_def("div", 2, lambda a: X / Y, fmt="{0} / {1}", doc="x / y")
_def("pow", 2, lambda a: X ** Y, fmt="{0} ^ {1}", doc="x ** y")
_def("neg", 1, lambda a: -X, fmt="-{0}", doc="-x")
_def("maximum", 2, lambda a: sp.Max(X, Y), fmt="maximum({0}, {1})",
     doc="elementwise maximum; a tie splits the gradient half and half (torch)")
_def("minimum", 2, lambda a: sp.Min(X, Y), fmt="minimum({0}, {1})", doc="elementwise minimum")
_def("where", 3, lambda a: sp.Piecewise((Y, sp.Ne(X, 0)), (C, True)), grads=(1, 2),
     fmt="where({0}, {1}, {2})", doc="y where the condition x is true, else c")
for _name, _rel, _sym in (("gt", sp.StrictGreaterThan, ">"), ("ge", sp.GreaterThan, ">="),
                          ("lt", sp.StrictLessThan, "<"), ("le", sp.LessThan, "<="),
                          ("eq", sp.Eq, "=="), ("ne", sp.Ne, "!=")):
    _def(_name, 2, (lambda r: (lambda a: sp.Piecewise((1, r(X, Y)), (0, True))))(_rel), grads=(),
         fmt="({0} " + _sym + " {1})", doc=f"1 where x {_sym} y, else 0 (no gradient)")

# ------------------------------------------------------------------- functions
_def("exp", 1, lambda a: sp.exp(X))
_def("log", 1, lambda a: sp.log(X))
_def("log1p", 1, lambda a: sp.log(1 + X))
_def("expm1", 1, lambda a: sp.exp(X) - 1)
_def("sqrt", 1, lambda a: sp.sqrt(X))
_def("rsqrt", 1, lambda a: 1 / sp.sqrt(X))
_def("square", 1, lambda a: X ** 2, fmt="{0}^2")
_def("reciprocal", 1, lambda a: 1 / X, fmt="1 / {0}")
_def("abs", 1, lambda a: sp.Abs(X), fmt="|{0}|", doc="|x|, derivative sign(x) (0 at 0)")
_def("sign", 1, lambda a: sp.sign(X), grads=(), doc="sign (no gradient)")
_def("sin", 1, lambda a: sp.sin(X))
_def("cos", 1, lambda a: sp.cos(X))
_def("tanh", 1, lambda a: sp.tanh(X))
_def("erf", 1, lambda a: sp.erf(X))
_def("sigmoid", 1, lambda a: sigmoid(X), doc="1 / (1 + exp(-x))")
_def("identity", 1, lambda a: X, fmt="{0}")
_def("detach", 1, lambda a: X, grads=(), fmt="detach({0})",
     doc="the value, with no gradient flowing back (torch .detach(), tf.stop_gradient)")
_def("floor", 1, lambda a: sp.floor(X), grads=())
_def("round", 1, lambda a: sp.Piecewise((sp.floor(X + sp.Rational(1, 2)), True)), grads=())


def _cast_check(attrs, where):
    if attrs["dtype"] not in ("float", "int", "bool"):
        raise TraceInputError(f"{where}op 'cast': dtype must be float, int or bool, got {attrs['dtype']!r}")
    return attrs


def _cast(a):
    if a["dtype"] == "int":                      # truncation toward zero, as .long() / int()
        return sp.sign(X) * sp.floor(sp.Abs(X))
    if a["dtype"] == "bool":
        return sp.Piecewise((1, sp.Ne(X, 0)), (0, True))
    return X


_def("cast", 1, _cast, defaults={"dtype": "float"}, check=_cast_check, fmt="{0}",
     grads=None, backward=lambda a: (sp.Integer(1) if a["dtype"] == "float" else sp.Integer(0),),
     doc="dtype conversion (float: the value; int: truncation; bool: x != 0; no gradient through int or bool)")
# no gradient through an int or bool cast, as in torch; and sympy's derivative of the truncation
# is an unevaluated Subs that no magnitude rule can walk

# ----------------------------------------------------------------- activations
_def("relu", 1, lambda a: sp.Piecewise((0, X <= 0), (X, True)), doc="max(x, 0), derivative 0 at 0")
_def("leaky_relu", 1, lambda a: sp.Piecewise((X, X > 0), (_c(a["alpha"]) * X, True)),
     defaults={"alpha": 0.01}, check=_attr_num("alpha"))
_def("elu", 1, lambda a: sp.Piecewise((X, X > 0), (_c(a["alpha"]) * (sp.exp(X) - 1), True)),
     defaults={"alpha": 1.0}, check=_attr_num("alpha"))
_SELU_A, _SELU_S = 1.6732632423543772848170429916717, 1.0507009873554804934193349852946
_def("selu", 1, lambda a: sp.Float(_SELU_S, 17) * sp.Piecewise(
    (X, X > 0), (sp.Float(_SELU_A, 17) * (sp.exp(X) - 1), True)))


def _gelu(a):
    if a["approximate"] == "tanh":
        k = sp.sqrt(2 / sp.pi)
        return X / 2 * (1 + sp.tanh(k * (X + sp.Float("0.044715", 17) * X ** 3)))
    return X / 2 * (1 + sp.erf(X / sp.sqrt(2)))


def _gelu_check(attrs, where):
    if attrs["approximate"] not in ("none", "tanh"):
        raise TraceInputError(f"{where}op 'gelu': approximate must be 'none' or 'tanh', "
                              f"got {attrs['approximate']!r}")
    return attrs


_def("gelu", 1, _gelu, defaults={"approximate": "none"}, check=_gelu_check,
     doc="x * Phi(x) (exact, with erf) or its tanh approximation")
_def("silu", 1, lambda a: X * sigmoid(X), doc="x * sigmoid(x) (swish)")


def _softplus(a):
    beta = _c(a["beta"])
    base = softplus(beta * X) / beta
    if a["threshold"] is None:
        return base
    return sp.Piecewise((X, beta * X > _c(a["threshold"])), (base, True))


_def("softplus", 1, _softplus, defaults={"beta": 1.0, "threshold": None},
     check=_attr_num("beta", "threshold", optional=("threshold",)),
     doc="log(1 + exp(beta x)) / beta; x itself above the threshold (torch: 20)")


def _clamp(a):
    lo, hi = _c(a["min"]), _c(a["max"])
    cases = []
    if lo is not None:
        cases.append((lo, X < lo))
    if hi is not None:
        cases.append((hi, X > hi))
    return sp.Piecewise(*cases, (X, True)) if cases else X


def _hardtanh(a):
    lo, hi = _c(a["min"]), _c(a["max"])
    return sp.Piecewise((lo, X <= lo), (hi, X >= hi), (X, True))


_def("hardtanh", 1, _hardtanh, defaults={"min": -1.0, "max": 1.0}, check=_attr_num("min", "max"),
     doc="x limited to [min, max] with no gradient at the bounds (torch hardtanh/relu6, Keras relu6)")
_def("clamp", 1, _clamp, defaults={"min": None, "max": None},
     check=_attr_num("min", "max", optional=("min", "max")),
     doc="x limited to [min, max]; the gradient passes on the closed interval")

# ------------------------------------------------------------ loss terms (per element)
# Each is the elementwise term of a loss in the prediction x and the target y; the
# macros in tracer.program.macros add the reduction (mean / sum / none).
_def("squared_error", 2, lambda a: (X - Y) ** 2, grads=(0, 1), fmt="({0} - {1})^2")
_def("absolute_error", 2, lambda a: sp.Abs(X - Y), grads=(0, 1), fmt="|{0} - {1}|")


def _huber(a):
    d = _c(a["delta"])
    e = sp.Abs(X - Y)
    return sp.Piecewise((sp.Rational(1, 2) * (X - Y) ** 2, e < d), (d * (e - d / 2), True))


def _smooth_l1(a):
    b = _c(a["beta"])
    e = sp.Abs(X - Y)
    if b == 0:
        return e
    return sp.Piecewise((sp.Rational(1, 2) * (X - Y) ** 2 / b, e < b), (e - b / 2, True))


_def("huber_term", 2, _huber, defaults={"delta": 1.0}, check=_attr_num("delta"), grads=(0, 1))
_def("smooth_l1_term", 2, _smooth_l1, defaults={"beta": 1.0}, check=_attr_num("beta"), grads=(0, 1))


def _bce_torch(a):
    lo = sp.Integer(-100)
    l1, l0 = sp.log(X), sp.log(1 - X)
    return -(Y * sp.Piecewise((l1, l1 > lo), (lo, True)) + (1 - Y) * sp.Piecewise((l0, l0 > lo), (lo, True)))


# torch's binary_cross_entropy_backward: grad * (x - y) / max((1 - x) * x, 1e-12)
_def("bce_term", 2, _bce_torch, grads=(0,),
     backward=lambda a: ((X - Y) / sp.Max((1 - X) * X, sp.Float(1e-12)), None),
     doc="torch binary cross-entropy on probabilities (each log clamped at -100)")


def _bce_logits(a):
    pw = _c(a["pos_weight"])
    soft = sp.log(1 + sp.exp(-sp.Abs(X))) + sp.Max(-X, 0)
    if pw is None or pw == 1:
        return (1 - Y) * X + soft
    return (1 - Y) * X + (1 + (pw - 1) * Y) * soft


def _bce_logits_backward(a):
    pw = _c(a["pos_weight"])
    if pw is None or pw == 1:
        return (sigmoid(X) - Y, None)
    return (((pw - 1) * Y + 1) * sigmoid(X) - pw * Y, None)


_def("bce_logits_term", 2, _bce_logits, defaults={"pos_weight": None},
     check=_attr_num("pos_weight", optional=("pos_weight",)), grads=(0,), backward=_bce_logits_backward,
     doc="binary cross-entropy on logits, the stable form torch and TensorFlow use")
