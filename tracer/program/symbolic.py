"""Sympy helpers of the step program: named functions, NumPy lambdify, rounding magnitudes.

Why named functions: ``sigmoid`` written as ``1/(1+exp(-x))`` has a sympy derivative
``exp(-x)/(1+exp(-x))**2`` that overflows to ``inf/inf`` for large ``-x``, while the
frameworks compute it as ``s(1-s)``. Declaring ``sigmoid`` (and ``softplus``) as sympy
functions whose ``fdiff`` is that form keeps ``sympy.diff`` the source of every
derivative and gives NumPy a stable formula. Each rewrites to plain ``exp``/``log``
for printing (Excel, text).

Why magnitudes: a float32 framework computing ``a - b`` with ``a ~ b`` is off by about
``eps * (|a| + |b|)``, not ``eps * |a - b|``. :func:`magnitude` turns any elementwise
expression into the expression of its rounding magnitude, node by node:
``M(v) = |v| + sum_i |dv/du_i| * M(u_i)`` over each node's direct arguments ``u_i``,
with ``M`` of an input given (a leaf's own absolute value). The checker compares a
recorded value with its recomputation against ``eps * M``, so cancellation never fails
a correct run while a wrong factor or sign still does.
"""
from __future__ import annotations

import functools

from typing import Callable

import numpy as np
import sympy as sp
from sympy.printing.numpy import NumPyPrinter

__all__ = ["sigmoid", "softplus", "magnitude", "lambdify", "to_plain"]


def _np_sigmoid(x):
    x = np.asarray(x)
    with np.errstate(over="ignore"):
        e = np.exp(-np.abs(x))
        return np.where(x >= 0, 1 / (1 + e), e / (1 + e))


def _np_softplus(x):
    return np.logaddexp(0, x)


class sigmoid(sp.Function):  # noqa: N801 - sympy function names are lower case
    """The logistic function ``1/(1+exp(-x))``; derivative ``s(1-s)``."""

    is_real = True

    def fdiff(self, argindex: int = 1) -> sp.Expr:
        s = sigmoid(self.args[0])
        return s * (1 - s)

    def _eval_rewrite_as_exp(self, x, **kwargs):
        return 1 / (1 + sp.exp(-x))


class softplus(sp.Function):  # noqa: N801
    """``log(1 + exp(x))``, computed stably; derivative ``sigmoid(x)``."""

    is_real = True

    def fdiff(self, argindex: int = 1) -> sp.Expr:
        return sigmoid(self.args[0])

    def _eval_rewrite_as_exp(self, x, **kwargs):
        return sp.log(1 + sp.exp(x))


def _np_erf(x):
    from scipy.special import erf
    return erf(x)


def _np_heaviside(x, h0):
    """Heaviside step with value ``h0`` at 0, as sympy's NumPy printing computes it
    (``select`` of three conditions, a NaN giving 1): ``not (x < 0)`` cast straight into
    the float output, then ``h0`` where ``x == 0``. ``np.where`` with scalar branches
    (the earlier form) costs about ten times as much on this path (relu' on every step)."""
    x = np.asarray(x)
    dt = x.dtype.type if x.dtype.kind == "f" else np.float64   # 0, h0 and 1 are exact in any float
    out = np.empty(x.shape, dtype=dt)
    np.logical_not(np.less(x, 0), out=out)
    if h0 != 1:
        zero = np.equal(x, 0)
        if zero.any():
            out[zero] = dt(h0)
    return out


def _np_select_const(conds, values):
    """``np.select(conds, values, default=nan)`` for branch values that are all finite
    numbers (relu', clamp', hardtanh', leaky_relu'...): the same numbers and dtype, as a
    sum of each branch's value times where it is the first true condition. ``select``
    assigns through a boolean mask, which on a random pattern (ReLU's) costs about ten
    times these few passes."""
    dt = np.result_type(*[np.asarray(v) for v in values], np.asarray(np.nan))
    conds = [np.asarray(c, dtype=bool) for c in conds]
    shape = np.broadcast_shapes(*[c.shape for c in conds])
    out = np.zeros(shape, dtype=dt)
    taken = np.zeros(shape, dtype=bool)
    for cond, v in zip(conds, values):
        active = cond & ~taken
        if v != 0:
            out += active * dt.type(v)      # exactly v where active, + 0 elsewhere
        taken |= active
    if not taken.all():
        out[~taken] = np.nan
    return out


_MODULES = [{"sigmoid": _np_sigmoid, "softplus": _np_softplus, "erf": _np_erf, "heaviside_": _np_heaviside,
             "select_const_": _np_select_const, "functools": functools}, "numpy"]


class _Printer(NumPyPrinter):
    """NumPy printing with the Heaviside step as one function call (see :func:`_np_heaviside`)."""

    def _print_Heaviside(self, expr):
        return f"heaviside_({self._print(expr.args[0])}, {self._print(expr.args[1])})"

    def _print_Piecewise(self, expr):
        """Constant branches as one :func:`_np_select_const` call (the rest as sympy prints it)."""
        values = [e for e, _ in expr.args]
        if not all(v.is_Number and v.is_finite for v in values):
            return super()._print_Piecewise(expr)
        conds = ", ".join(self._print(c) for _, c in expr.args)
        return f"select_const_(({conds},), ({', '.join(self._print(v) for v in values)},))"


def lambdify(args: list[sp.Symbol] | tuple, expr: sp.Expr) -> Callable:
    """``sympy.lambdify`` to NumPy knowing the named functions above (and ``erf``)."""
    printer = _Printer({"fully_qualified_modules": False, "inline": True, "allow_unknown_functions": True,
                        "user_functions": {k: k for k in _MODULES[0]}})     # as lambdify's own
    return sp.lambdify(args, expr, modules=_MODULES, printer=printer)


def to_plain(expr: sp.Expr) -> sp.Expr:
    """``expr`` with the named functions rewritten to exp/log (for printing)."""
    return expr.rewrite(sp.exp) if expr.has(sigmoid, softplus) else expr


def _d(expr, child):
    """d expr / d child, treating the sub-expression ``child`` as a variable."""
    dummy = sp.Dummy("u", real=True)
    return sp.diff(expr.xreplace({child: dummy}), dummy).xreplace({dummy: child})


def magnitude(expr: sp.Expr, mags: dict) -> sp.Expr:
    """The rounding-magnitude expression of ``expr`` (see the module docstring).

    ``mags`` maps each input symbol to the symbol of its magnitude. Numbers carry no
    rounding of their own beyond their value's.
    """
    memo: dict = {}

    def m(e):
        if e in mags:
            return mags[e]
        if e.is_Number or e.is_NumberSymbol:
            return sp.Abs(e)
        if e in memo:
            return memo[e]
        if isinstance(e, sp.Piecewise):
            out = sp.Piecewise(*[(m(ex), cond) for ex, cond in e.args])
        elif isinstance(e, (sp.Max, sp.Min)):
            out = sp.Max(*[m(a) for a in e.args])
        elif isinstance(e, (sp.Heaviside, sp.sign)) or e.is_Relational or e.is_Boolean:
            out = sp.Abs(e)
        elif isinstance(e, sp.Abs):
            out = m(e.args[0])
        elif e.is_Add:
            out = sp.Add(*[m(a) for a in e.args])
        elif e.is_Mul:
            args = e.args
            terms = []
            for j, a in enumerate(args):
                if a.is_Number:
                    continue
                others = sp.Mul(*[sp.Abs(b) for k, b in enumerate(args) if k != j])
                terms.append(others * m(a))
            out = sp.Add(*terms) if terms else sp.Abs(e)
        else:
            # Pow and functions: first-order propagation through each argument
            # an exact input (magnitude 0) adds nothing, also where the derivative is
            # infinite (sqrt(v) at v = 0: Adam's state of a gradient that was always 0)
            out = sp.Abs(e)
            for a in e.args:
                if a.is_Number:
                    continue
                ma = m(a)
                out = out + sp.Piecewise((0, sp.Eq(ma, 0)), (sp.Abs(_d(e, a)) * ma, True))
        memo[e] = out
        return out

    return m(expr)
