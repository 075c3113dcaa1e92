"""Activation functions as sympy expressions with NumPy forward and backward passes.

Why: to recompute a dense layer's forward pass and its gradients by hand, the checker
needs each activation and its derivative. Elementwise activations are a sympy expression
in ``z``; the derivative is ``sympy.diff(expr, z)``. Where the framework computes the
derivative from the *output* (sigmoid: ``a(1-a)``, tanh: ``1-a^2``, which stays finite
where ``exp(-z)`` overflows), :attr:`Activation.derivative_in_a` holds that form and the
tests prove it equal to the sympy derivative.

ReLU is written as a Piecewise so that its derivative at 0 is 0, as in torch and
TensorFlow; ``maximum0`` is ``torch.max(z, 0)`` / ``Max(z, 0)``, whose gradient at a tie
is 1/2 (torch's ``MaximumBackward0`` splits it).
"""
from __future__ import annotations

from functools import cached_property

import numpy as np
import sympy as sp

from ..errors import TraceInputError, UnsupportedError
from ..program.numpy_names import numpy_lambdify

__all__ = ["Activation", "get_activation", "ACTIVATION_NAMES", "z", "a"]

z = sp.Symbol("z", real=True)
a = sp.Symbol("a", real=True)

ACTIVATION_NAMES = ("linear", "relu", "maximum0", "sigmoid", "tanh", "softmax", "softplus", "elu", "silu")


class Activation:
    """One activation: ``expr`` (sympy in ``z``), forward ``f`` and ``backward`` in NumPy."""

    def __init__(self, name: str, expr, derivative_in_a=None, vector: bool = False):
        self.name = name
        self.expr = expr
        self.derivative_in_a = derivative_in_a
        self.vector = vector

    @cached_property
    def derivative(self) -> sp.Expr:
        """d expr / dz from sympy.diff (softmax: the diagonal Jacobian term ``a (1 - a)``)."""
        if self.vector:
            return self.derivative_in_a
        return sp.diff(self.expr, z)

    @cached_property
    def _f(self):
        return numpy_lambdify([z], self.expr)

    @cached_property
    def _df(self):
        if self.derivative_in_a is not None:
            return numpy_lambdify([z, a], self.derivative_in_a)
        d = numpy_lambdify([z], self.derivative)
        return lambda zz, aa: d(zz)

    def f(self, zv: np.ndarray) -> np.ndarray:
        """Forward pass: ``a = f(z)`` elementwise (softmax: over the last axis)."""
        zv = np.asarray(zv, dtype=np.float64)
        if self.vector:
            e = np.exp(zv - zv.max(axis=-1, keepdims=True))
            return e / e.sum(axis=-1, keepdims=True)
        with np.errstate(over="ignore"):
            return self._f(zv) * np.ones_like(zv)

    def backward(self, zv: np.ndarray, av: np.ndarray, upstream: np.ndarray) -> np.ndarray:
        """d(loss)/dz given the pre-activation ``z``, output ``a`` and d(loss)/da ``upstream``.

        Elementwise: ``upstream * f'(z)``. Softmax: the Jacobian-vector product over the last
        axis, ``a * (upstream - sum(upstream * a))``. ``a`` may be None (recomputed from z).
        """
        zv = np.asarray(zv, dtype=np.float64)
        av = self.f(zv) if av is None else np.asarray(av, dtype=np.float64)
        u = np.asarray(upstream, dtype=np.float64)
        if u.shape != zv.shape:
            raise TraceInputError(f"upstream: expected shape {zv.shape} (same as z), got {u.shape}")
        if self.vector:
            return av * (u - (u * av).sum(axis=-1, keepdims=True))
        with np.errstate(over="ignore"):   # Piecewise evaluates every branch, e.g. exp(1000)
            return u * (self._df(zv, av) * np.ones_like(zv))

    def describe(self) -> str:
        """The formula as one line of text."""
        return f"{self.name}(z) = {sp.sstr(self.expr)}".replace("**", "^")

    def __repr__(self):
        return f"Activation({self.name!r})"


def _softmax_expr():
    zk = sp.IndexedBase("z")
    k, i = sp.symbols("k i", integer=True)
    mm = sp.Symbol("m", integer=True, positive=True)
    return sp.exp(zk[i]) / sp.Sum(sp.exp(zk[k]), (k, 1, mm))


_SIG = 1 / (1 + sp.exp(-z))
_REGISTRY = {
    "linear": lambda: Activation("linear", z, sp.Integer(1)),
    "relu": lambda: Activation("relu", sp.Piecewise((0, z <= 0), (z, True))),
    "maximum0": lambda: Activation("maximum0", sp.Max(z, 0)),
    "sigmoid": lambda: Activation("sigmoid", _SIG, a * (1 - a)),
    "tanh": lambda: Activation("tanh", sp.tanh(z), 1 - a ** 2),
    "softmax": lambda: Activation("softmax", _softmax_expr(), a * (1 - a), vector=True),
    # stable forms: no exp of a large positive number in the value or the sympy derivative
    "softplus": lambda: Activation("softplus", sp.Max(z, 0) + sp.log(1 + sp.exp(-sp.Abs(z)))),
    "elu": lambda: Activation("elu", sp.Piecewise((z, z > 0), (sp.exp(z) - 1, True))),
    "silu": lambda: Activation("silu", z * (1 + sp.tanh(z / 2)) / 2),
}
_ALIASES = {None: "linear", "identity": "linear", "none": "linear", "logistic": "sigmoid", "swish": "silu"}
_CACHE: dict = {}


def get_activation(name: str) -> Activation:
    """Return the :class:`Activation` called ``name`` (``linear``, ``relu``, ``sigmoid``, ``tanh``, ``softmax``)."""
    key = _ALIASES.get(name, name)
    if key not in _REGISTRY:
        raise UnsupportedError(f"activation {name!r}: steptrace has formulas for {', '.join(ACTIVATION_NAMES)}")
    if key not in _CACHE:
        _CACHE[key] = _REGISTRY[key]()
    return _CACHE[key]
