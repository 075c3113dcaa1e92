"""Print the sympy formulas three ways: a spreadsheet formula, one line of text, LaTeX.

Why: the explanation, the Excel export and the checker must show the *same* formula the
numbers were computed from. Printing from the sympy expression (never from a hand-written
string) guarantees that.

Excel needs its own printer: Excel's unary minus binds tighter than ``^`` (``=-2^2`` is 4),
``LN`` is the natural log and ``Piecewise`` becomes nested ``IF``. This printer therefore
parenthesises every power base/exponent and every negated term.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import sympy as sp

from ..errors import TraceInputError

if TYPE_CHECKING:
    from collections.abc import Iterable

__all__ = ["excel", "text", "latex", "readable", "assignment"]

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


def _xl(e: sp.Basic, cells: dict) -> str:
    """``e`` as an Excel formula body: a cell given for it, else printed by the first printer
    of its kind (atoms, arithmetic, logic, functions)."""
    if e in cells:
        return cells[e]
    for printer in (_xl_atom, _xl_arithmetic, _xl_logic, _xl_function):
        out = printer(e, cells)
        if out is not None:
            return out
    raise TraceInputError(f"expr: cannot print {type(e).__name__} ({e}) as an Excel formula")


def _xl_atom(e: sp.Basic, cells: dict) -> str | None:
    """A leaf: a number or a boolean. A symbol without a cell is the caller's mistake,
    said with the fix (a formula must not silently reference nothing)."""
    if isinstance(e, sp.Symbol):
        raise TraceInputError(f"cells: no cell given for symbol {e.name!r}; pass cells={{Symbol: 'B2', ...}}")
    if e is sp.S.true:
        return "TRUE"
    if e is sp.S.false:
        return "FALSE"
    if e.is_Number:
        return _num(e)
    return None


def _xl_arithmetic(e: sp.Basic, cells: dict) -> str | None:
    """Sums, products and powers, each parenthesised: Excel's unary minus binds tighter
    than ``^``, so no precedence is left to Excel."""
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
    return None


def _xl_logic(e: sp.Basic, cells: dict) -> str | None:
    """Conditions and what branches on them (``Piecewise`` and ``Heaviside`` become nested
    ``IF``): Excel has no piecewise function, only ``IF``."""
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
    if isinstance(e, sp.Rel):
        op = {"==": "=", "!=": "<>"}.get(e.rel_op, e.rel_op)
        return f"({_xl(e.lhs, cells)}{op}{_xl(e.rhs, cells)})"
    if isinstance(e, (sp.And, sp.Or)):
        f = "AND" if isinstance(e, sp.And) else "OR"
        return f"{f}(" + ",".join(_xl(a, cells) for a in e.args) + ")"
    if isinstance(e, sp.ITE):       # sympy folds a Piecewise inside a condition into ITE
        return "IF(" + ",".join(_xl(a, cells) for a in e.args) + ")"
    if isinstance(e, sp.Not):
        return f"NOT({_xl(e.args[0], cells)})"
    return None


def _xl_function(e: sp.Basic, cells: dict) -> str | None:
    """A function call under its Excel name (``LN`` is the natural log)."""
    if isinstance(e, sp.Mod):
        return f"MOD({_xl(e.args[0], cells)},{_xl(e.args[1], cells)})"
    if isinstance(e, (sp.Max, sp.Min)):
        f = "MAX" if isinstance(e, sp.Max) else "MIN"
        return f"{f}(" + ",".join(_xl(a, cells) for a in e.args) + ")"
    for fn, name in _FUNCS.items():
        if isinstance(e, fn):
            return f"{name}(" + ",".join(_xl(a, cells) for a in e.args) + ")"
    return None


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


# --------------------------------------------------------------------------- readable
_SUPERSCRIPT = {2: "\u00b2", 3: "\u00b3"}
_MINUS, _DOT, _ARROW, _ROOT = "\u2212", "\u00b7", "\u2190", "\u221a"
_REL = {"==": "=", "!=": "\u2260", ">=": "\u2265", "<=": "\u2264", ">": ">", "<": "<"}


def readable(expr: sp.Basic | str, first: str | None = None, variables: Iterable[str] = ()) -> str:
    """``expr`` as a person writes it: ``p − lr·g``, ``rho·velocity + (1 − rho)·g²``,
    ``lr·g / √denominator``.

    Why not sympy's printer: it orders terms and factors alphabetically (``-g*lr + p``).
    Here the assigned variable ``first`` leads its sum, constants lead products and
    ``variables`` (the gradient, the parameter, the optimizer state) come after the
    hyperparameters that scale them.
    """
    e = sp.sympify(expr)
    return _R(first, set(variables), e).p(e)


def assignment(name: str, expr: sp.Basic | str, variables: Iterable[str] = ()) -> str:
    """``name ← expr`` printed by :func:`readable`, ``name`` leading its own sum."""
    return f"{name} {_ARROW} {readable(expr, first=name, variables=set(variables) | {name})}"


class _R:
    """The readable printer's state: which symbol leads sums, which names are variables."""

    def __init__(self, first, variables, root):
        self.first = first
        self.root = root
        self.variables = variables | {"p", "g"}

    def p(self, e) -> str:
        if isinstance(e, sp.Symbol):
            return e.name
        if e.is_Number:
            return self.number(e)
        if isinstance(e, sp.Add):
            return self.add(e)
        if isinstance(e, sp.Mul):
            return self.mul(e)
        if isinstance(e, sp.Pow):
            return self.pow(e)
        if isinstance(e, sp.Piecewise):
            parts = [f"{self.p(x)} if {self.p(c)}" if c is not sp.S.true else self.p(x) for x, c in e.args]
            return "(" + ", else ".join(parts) + ")"
        if isinstance(e, sp.Rel):
            return f"{self.p(e.lhs)} {_REL.get(e.rel_op, e.rel_op)} {self.p(e.rhs)}"
        if isinstance(e, sp.Abs):
            return f"|{self.p(e.args[0])}|"
        if isinstance(e, sp.Function) or isinstance(e, (sp.Max, sp.Min)):
            name = type(e).__name__.lower()
            return f"{name}(" + ", ".join(self.p(a) for a in e.args) + ")"
        return text(e)

    @staticmethod
    def number(e) -> str:
        if e.is_Integer:
            return str(int(e)).replace("-", _MINUS)
        if e.is_Rational:
            return f"{int(e.p)}/{int(e.q)}".replace("-", _MINUS)
        from ..display import num
        return num(float(e), 6).replace("-", _MINUS)

    def _leads(self, term, top: bool) -> int:
        names = {s.name for s in term.free_symbols}
        if top and self.first in names:
            return 0
        neg = term.as_coeff_Mul()[0].is_negative
        return 2 if neg else 1

    def add(self, e) -> str:
        top = e is self.root
        terms = sorted(sp.Add.make_args(e), key=lambda t: self._leads(t, top))
        out = ""
        for i, t in enumerate(terms):
            c, _ = t.as_coeff_Mul()
            neg = c.is_negative
            body = self.p(-t if neg else t)
            if i == 0:
                out = (_MINUS if neg else "") + body
            else:
                out += f" {_MINUS} {body}" if neg else f" + {body}"
        return out

    def _rank(self, f) -> tuple:
        if f.is_Number:
            return (0, "")
        names = {s.name for s in f.free_symbols}
        return (2 if names & self.variables else 1, text(f))

    def _factor(self, f) -> str:
        s = self.p(f)
        return f"({s})" if isinstance(f, sp.Add) or (f.is_Number and f.is_negative) else s

    def mul(self, e) -> str:
        c, rest = e.as_coeff_Mul()
        if c.is_negative:
            return _MINUS + self._wrap_neg(self.mul_pos(-e))
        return self.mul_pos(e)

    @staticmethod
    def _wrap_neg(s: str) -> str:
        return f"({s})" if " + " in s or f" {_MINUS} " in s else s

    def mul_pos(self, e) -> str:
        num_f, den_f = [], []
        for f in sp.Mul.make_args(e):
            base, ex = f.as_base_exp()
            if ex.is_Number and ex.is_negative:
                den_f.append(base if ex == -1 else sp.Pow(base, -ex))
            elif f != 1:
                num_f.append(f)
        num_s = _DOT.join(self._factor(f) for f in sorted(num_f, key=self._rank)) or "1"
        if not den_f:
            return num_s
        den_s = _DOT.join(self._factor(f) for f in sorted(den_f, key=self._rank))
        if len(den_f) > 1:
            den_s = f"({den_s})"
        return f"{num_s} / {den_s}"

    def pow(self, e) -> str:
        b, x = e.args
        simple = isinstance(b, sp.Symbol) or (b.is_Number and not b.is_negative)
        if x == sp.Rational(1, 2):
            return _ROOT + (self.p(b) if simple else f"({self.p(b)})")
        if x.is_Number and x.is_negative:
            return f"1 / {self.p(sp.Pow(b, -x))}" if x != -1 else f"1 / {self._factor(b)}"
        base = self.p(b) if simple else f"({self.p(b)})"
        if x.is_Integer and int(x) in _SUPERSCRIPT:
            return base + _SUPERSCRIPT[int(x)]
        ex = self.p(x)
        return f"{base}^{ex}" if isinstance(x, sp.Symbol) or x.is_Number else f"{base}^({ex})"
