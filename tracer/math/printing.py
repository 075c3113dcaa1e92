"""Print the sympy formulas three ways: a spreadsheet formula, one line of text, LaTeX.

Why: the explanation, the Excel export and the checker must show the *same* formula the
numbers were computed from. Printing from the sympy expression (never from a hand-written
string) guarantees that.

Excel needs its own printer: Excel's unary minus binds tighter than ``^`` (``=-2^2`` is 4),
``LN`` is the natural log and ``Piecewise`` becomes nested ``IF``. This printer therefore
parenthesises every power base/exponent and every negated term.
"""
from __future__ import annotations

import sympy as sp

from ..errors import TraceInputError

__all__ = ["excel", "text", "latex"]

_FUNCS = {
    sp.exp: "EXP", sp.log: "LN", sp.Abs: "ABS", sp.sign: "SIGN", sp.tanh: "TANH",
    sp.sin: "SIN", sp.cos: "COS",
}


def _num(x) -> str:
    if x.is_Integer:
        return str(int(x))
    if x.is_Rational:
        return f"({int(x.p)}/{int(x.q)})"
    v = float(x)
    s = repr(v)
    return s if v >= 0 else f"({s})"


def _xl(e, cells) -> str:
    if e in cells:
        return cells[e]
    if isinstance(e, sp.Symbol):
        raise TraceInputError(f"cells: no cell given for symbol {e.name!r}; pass cells={{Symbol: 'B2', ...}}")
    if e is sp.S.true:
        return "TRUE"
    if e is sp.S.false:
        return "FALSE"
    if e.is_Number:
        return _num(e)
    if isinstance(e, sp.Add):
        terms = sp.Add.make_args(e)
        out = _xl(terms[0], cells)
        for t in terms[1:]:
            c, rest = t.as_coeff_Mul()
            if c.is_Number and c < 0:
                out += "-" + _xl(-t, cells)
            else:
                out += "+" + _xl(t, cells)
        return f"({out})"
    if isinstance(e, sp.Mul):
        num, den = sp.fraction(e)
        if den != 1:
            return f"({_xl(num, cells)}/{_xl(den, cells)})"
        c, rest = e.as_coeff_Mul()
        if c == -1:
            return f"(-{_xl(rest, cells)})"
        return "(" + "*".join(_xl(a, cells) for a in e.args) + ")"
    if isinstance(e, sp.Pow):
        b, x = e.args
        if x == sp.Rational(1, 2):
            return f"SQRT({_xl(b, cells)})"
        if x == -1:
            return f"(1/{_xl(b, cells)})"
        return f"(({_xl(b, cells)})^({_xl(x, cells)}))"
    if isinstance(e, sp.Piecewise):
        out = None
        for expr, cond in reversed(e.args):
            if cond is sp.S.true and out is None:
                out = _xl(expr, cells)
            else:
                out = f"IF({_xl(cond, cells)},{_xl(expr, cells)},{out if out is not None else 'NA()'})"
        return out
    if isinstance(e, sp.Heaviside):
        x = e.args[0]
        h0 = e.args[1] if len(e.args) > 1 else sp.Rational(1, 2)
        xs = _xl(x, cells)
        return f"IF({xs}>0,1,IF({xs}<0,0,{_xl(h0, cells)}))"
    if isinstance(e, sp.Mod):
        return f"MOD({_xl(e.args[0], cells)},{_xl(e.args[1], cells)})"
    if isinstance(e, (sp.Max, sp.Min)):
        f = "MAX" if isinstance(e, sp.Max) else "MIN"
        return f"{f}(" + ",".join(_xl(a, cells) for a in e.args) + ")"
    if isinstance(e, sp.Rel):
        op = {"==": "=", "!=": "<>"}.get(e.rel_op, e.rel_op)
        return f"({_xl(e.lhs, cells)}{op}{_xl(e.rhs, cells)})"
    if isinstance(e, (sp.And, sp.Or)):
        f = "AND" if isinstance(e, sp.And) else "OR"
        return f"{f}(" + ",".join(_xl(a, cells) for a in e.args) + ")"
    if isinstance(e, sp.Not):
        return f"NOT({_xl(e.args[0], cells)})"
    for fn, name in _FUNCS.items():
        if isinstance(e, fn):
            return f"{name}(" + ",".join(_xl(a, cells) for a in e.args) + ")"
    raise TraceInputError(f"expr: cannot print {type(e).__name__} ({e}) as an Excel formula")


def excel(expr: sp.Expr | str, cells: dict) -> str:
    """Return an Excel formula (with the leading ``=``) computing ``expr``.

    ``cells`` maps each free sympy Symbol (or a whole sub-expression) to a cell reference
    such as ``"B2"`` or ``"Sheet1!$C$4"``. A symbol without a cell raises TraceInputError.
    """
    if not isinstance(cells, dict):
        raise TraceInputError(f"cells: expected a dict {{Symbol: 'B2'}}, got {type(cells).__name__}")
    expr = sp.sympify(expr)
    return "=" + _xl(expr, cells)


def text(expr: sp.Expr | str) -> str:
    """One readable line of text for ``expr`` (``^`` for powers, as people write them)."""
    return sp.sstr(sp.sympify(expr)).replace("**", "^")


def latex(expr: sp.Expr | str) -> str:
    """LaTeX for ``expr`` (for the HTML report and notebooks)."""
    return sp.latex(sp.sympify(expr))
