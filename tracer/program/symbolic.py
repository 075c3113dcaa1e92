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

from .scratch import empty
from .numpy_names import NUMPY

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
    out = empty(x.shape, dt)
    mask = np.less(x, 0)                       # one boolean buffer for both masks
    np.logical_not(mask, out=out)
    if h0 != 1:
        zero = np.equal(x, 0, out=mask)
        if zero.any():
            out[zero] = dt(h0)
    return out


def _np_select(condlist, choicelist, default=np.nan):
    """``np.select(condlist, choicelist, default)`` with the same numbers, dtype and shape,
    without its masked assignment (``copyto(where=)``), which on a random pattern (ReLU's
    signs) costs about ten times more than plain passes: each branch is blended into the
    float result through its bits, ``out = out & ~mask | choice & mask``, from the last
    branch to the first (the first true condition wins, as in ``select``). Anything but a
    float32/float64 result of boolean conditions goes to ``np.select`` itself."""
    choices = [c if type(c) in (int, float, complex) else np.asarray(c) for c in choicelist]
    dt = np.result_type(*choices, default if type(default) in (int, float, complex) else np.asarray(default))
    conds = [np.asarray(c) for c in condlist]
    ut = {4: np.uint32, 8: np.uint64}.get(dt.itemsize) if dt.kind == "f" else None
    if ut is None or len(conds) != len(choices) or any(c.dtype != np.bool_ for c in conds):
        return np.select(condlist, choicelist, default=default)
    shape = np.broadcast_shapes(*[c.shape for c in conds], *[np.shape(c) for c in choices])
    if all(type(c) in (int, float) and np.isfinite(c) for c in choices):
        return _select_numbers(conds, choices, dt, shape, default)
    out = empty(shape, dt)
    last = conds[-1]
    if not (last.ndim == 0 and bool(last)):       # a last branch that always holds needs no default
        out[...] = default
    bits = out.view(ut)
    for cond, choice in zip(conds[::-1], choices[::-1]):
        if cond.ndim == 0:
            if bool(cond):
                out[...] = choice
            continue
        keep = np.subtract(cond, 1, dtype=ut, out=empty(cond.shape, ut))   # all ones where the branch does not apply
        np.bitwise_and(bits, keep, out=bits)
        value = np.asarray(choice, dtype=dt)
        if value.ndim == 0 and not int(value.view(ut)):
            continue                               # +0.0: the cleared bits already are it
        np.invert(keep, out=keep)
        part = np.bitwise_and(keep, value.view(ut) if value.ndim == 0 else np.broadcast_to(value, shape).view(ut),
                              out=keep if keep.shape == shape else None)
        np.bitwise_or(bits, part, out=bits)
    return out


def _select_numbers(conds, numbers, dt, shape, default):
    """:func:`_np_select` of branches that are all finite numbers (relu', clamp'...): the
    mask where each number is the first true branch, cast to the float result (times the
    number): one float allocation for the usual one nonzero value, every other pass on
    booleans (exact: at most one branch holds at an element)."""
    taken, by_value = None, {}
    for cond, v in zip(conds, numbers):
        if cond.ndim == 0:                        # a constant condition (the final True)
            if not bool(cond):
                continue
            active = np.ones(shape, dtype=bool) if taken is None else ~taken
        else:
            active = cond if taken is None else cond & ~taken
        if v != 0:
            by_value[v] = active if v not in by_value else by_value[v] | active
        taken = active if taken is None else taken | active
    out = None
    for v, mask in by_value.items():
        term = np.multiply(np.broadcast_to(mask, shape), dt.type(v), dtype=dt, out=empty(shape, dt))
        out = term if out is None else np.add(out, term, out=out)
    if out is None:
        out = empty(shape, dt)
        out.fill(0)
    elif any(v < 0 for v in by_value):
        np.add(out, 0.0, out=out)                 # False * -2.0 is -0.0; select gives 0.0 there
    if taken is None or not taken.all():
        out[...] = np.where(np.broadcast_to(taken if taken is not None else False, shape), out, default)
    return out


_MODULES = [{"sigmoid": _np_sigmoid, "softplus": _np_softplus, "erf": _np_erf, "heaviside_": _np_heaviside,
             "select_": _np_select, "functools": functools}, NUMPY]


class _Printer(NumPyPrinter):
    """NumPy printing with the Heaviside step as one function call (see :func:`_np_heaviside`)."""

    def _print_Heaviside(self, expr):
        return f"heaviside_({self._print(expr.args[0])}, {self._print(expr.args[1])})"

    def _print_Piecewise(self, expr):
        """As sympy prints it, through :func:`_np_select` (the same numbers, faster)."""
        text = super()._print_Piecewise(expr)
        head = self._module_format(self._module + ".select") + "("
        return "select_(" + text[len(head):] if text.startswith(head) else text


def lambdify(args: list[sp.Symbol] | tuple, expr: sp.Expr, cse: bool = False) -> Callable:
    """``sympy.lambdify`` to NumPy knowing the named functions above (and ``erf``).

    ``cse``: common subexpressions computed once (a magnitude rule repeats the derivative in
    each of its terms: relu's ``m_g |H(x)| + |g| |H(x)|`` ran its step function twice). Only
    for magnitudes: sympy's elimination may write ``x - y`` as ``-(y - x)``, the same number
    up to the sign of a zero, which a magnitude (a sum of absolute values) never sees, but a
    value or a derivative could."""
    printer = _Printer({"fully_qualified_modules": False, "inline": True, "allow_unknown_functions": True,
                        "user_functions": {k: k for k in _MODULES[0]}})     # as lambdify's own
    return sp.lambdify(args, expr, modules=_MODULES, printer=printer, cse=cse)


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
        elif isinstance(e, (sp.Heaviside, sp.sign, sp.floor, sp.ceiling)) or e.is_Relational or e.is_Boolean:
            out = sp.Abs(e)          # steps: no derivative to carry a rounding through
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
